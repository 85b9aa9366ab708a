"""The house: no import circle anywhere in the package, and one version.

The layers themselves (spec < audio < harness | local < lab < report < surfaces) are the
import-linter contract in pyproject.toml, which the test command checks (`lint-imports`); a
circle inside one layer is not a layer violation, so it is looked for here, over every import,
the ones inside functions too (a lazy import is still a dependency).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import grimp

import voicelab

ROOT = Path(__file__).resolve().parents[1]


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("voicelab", include_external_packages=False)
    assert len(graph.modules) > 50, "the package was found"
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(module)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.d", imported="a.b")
    assert circles(graph) == [["a.b", "a.c"]]


def test_one_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert voicelab.__version__ == project["version"]


def test_the_command_lines_help_loads_neither_the_sdk_nor_the_data_libraries():
    """`voicelab --help` and a mistyped option answer at once: the parser is built from light
    tables; the SDK, pandas and the report's libraries load only when a command needs them."""
    import subprocess
    import sys

    probe = ("import sys; from voicelab.surfaces.cli.main import build_parser; build_parser(); "
             "print(sorted(m for m in ('elevenlabs', 'pandas', 'matplotlib', 'papermill', 'pydantic', 'scipy') "
             "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


#: What a text conversation never needs, so neither the local backend's import nor a one-call run
#: may load it: the SDK's REST models (GET agent's, the workflow and conversation models: ~0.5 s),
#: the audio side (numpy, for voice calls), and the tables' and reports' libraries.
NOT_FOR_A_CALL = ("elevenlabs.types.get_agent_response_model", "elevenlabs.types.agent_workflow_response_model",
                  "elevenlabs.types.conversational_config", "elevenlabs.types.get_conversation_response_model",
                  "numpy", "pandas", "pyarrow", "scipy", "matplotlib", "papermill")


def _loaded(code: str, *args: str) -> list[str]:
    import json
    import subprocess
    import sys

    probe = (f"import json, sys\n{code}\n"
             f"print(json.dumps(sorted(m for m in {NOT_FOR_A_CALL!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_local_backend_loads_without_the_sdks_rest_models_or_the_audio_side():
    """The backend's module import serves conversations at once: its REST handlers import the
    SDK's models with the first request that needs one (voicelab/local/sdk_models.py), and the
    voice side loads with the first voice conversation."""
    assert _loaded("import voicelab.local") == []


def test_a_one_call_run_loads_neither_the_rest_models_nor_the_data_libraries(tmp_path):
    """`voicelab run --no-report` of one call: the backend, the call, the summary and the gate
    (voicelab/lab/gates.py), nothing of the tables or the report; the REST models stay unloaded
    because the call never asks for them. (benchmarks/startup.py times it.)"""
    run = ("from voicelab.surfaces.cli.main import main\n"
           "code = main(['run', '--persona', 'anna-double-charge', '--no-report', '--runs', sys.argv[1]])\n"
           "assert code == 0, code")
    assert _loaded(run, str(tmp_path / "runs")) == []


def test_the_packages_face_gives_every_public_name():
    """`import voicelab; voicelab.run_batch(...)` and `from voicelab import Call, Dataset` keep
    working whatever package a name lives in."""
    import importlib

    face = importlib.import_module("voicelab")
    for name in face.__all__:
        assert getattr(face, name) is not None, name
    from voicelab import Call, Dataset, run_batch  # noqa: F401 - the names users import


def _judges():
    import importlib.util

    spec = importlib.util.spec_from_file_location("judges", ROOT / "scripts" / "judges.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_official_clients_are_pinned_in_one_place():
    judges = _judges()
    assert judges.differences(judges.load()) == []
    import elevenlabs.version

    assert elevenlabs.version.__version__ == judges.load()["python"]["elevenlabs"]  # what is installed


def test_a_pin_that_differs_is_named(tmp_path, monkeypatch):
    judges = _judges()
    pins = judges.load()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(judges.PYPROJECT.read_text().replace(f'"elevenlabs=={pins["python"]["elevenlabs"]}"',
                                                              '"elevenlabs>=2"'))
    package = tmp_path / "package.json"
    listed = json.loads(judges.PACKAGE.read_text())
    listed["dependencies"]["@elevenlabs/client"] = "0.0.1"
    package.write_text(json.dumps(listed))
    monkeypatch.setattr(judges, "PYPROJECT", pyproject)
    monkeypatch.setattr(judges, "PACKAGE", package)
    found = judges.differences(pins)
    assert f"pyproject.toml: elevenlabs>=2, contracts/judges.toml pins {pins['python']['elevenlabs']}" in found
    assert any(f.startswith("js/package.json: @elevenlabs/client 0.0.1") for f in found), found
    assert len(found) == 2, found
