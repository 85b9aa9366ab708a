"""The house: no import circle anywhere in the package, and one version.

The layers themselves (spec < audio < harness | local < lab < report < surfaces) are the
import-linter contract in pyproject.toml, which the test command checks (`lint-imports`); a
circle inside one layer is not a layer violation, so it is looked for here, over every import,
the ones inside functions too (a lazy import is still a dependency).
"""

from __future__ import annotations

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


def test_the_packages_face_gives_every_public_name():
    """`import voicelab; voicelab.run_batch(...)` and `from voicelab import Call, Dataset` keep
    working whatever package a name lives in."""
    import importlib

    face = importlib.import_module("voicelab")
    for name in face.__all__:
        assert getattr(face, name) is not None, name
    from voicelab import Call, Dataset, run_batch  # noqa: F401 - the names users import
