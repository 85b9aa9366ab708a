"""Every bad input is one clear line, exit status 2, no traceback, and nothing written.

The corpus is `tests/spec/bad_inputs/`, one file per case, each saying what the error must mention
(`# expect: ...`):

    persona-*.yaml   a persona file:  voicelab run --personas FILE
    agent-*.yaml     an agent file, put into a copy of the bundled agents (`# as: NAME`, which
                     file it replaces or adds): voicelab run --agents DIR, and voicelab serve --agents DIR
    cli-*.args       the arguments of one voicelab command line, run where the bundled datasets are

Each case runs the real CLI in its own process and folder, which must be unchanged afterwards
(forked from a warm fork server, `tests/cli_process.py`: the same `voicelab` entry point without
a second of imports per case).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .. import cli_process
from ..conftest import ROOT

pytestmark = pytest.mark.slow  # ~150 voicelab processes (about 15 s on 2 cores)

CASES = Path(__file__).resolve().parent / "bad_inputs"
NAMES = sorted(p.name for p in CASES.iterdir() if p.suffix in (".yaml", ".args"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ELEVENLABS_")} | {"NO_PROXY": "127.0.0.1,localhost"}


def header(path: Path, key: str) -> str | None:
    for line in path.read_bytes().splitlines():
        if line.startswith(f"# {key}: ".encode()):
            return line.split(b": ", 1)[1].decode()
    return None


def commands(name: str, folder: Path) -> list[list[str]]:
    """Set up `folder` for the case and return the command lines it is tried with."""
    case = CASES / name
    shutil.copytree(ROOT / "datasets", folder / "datasets")
    if name.startswith("persona-"):
        shutil.copy(case, folder / "bad.yaml")
        return [["run", "--personas", "bad.yaml", "--no-report"]]
    if name.startswith("agent-"):
        agents = folder / "agents"
        shutil.copytree(ROOT / "datasets" / "agents", agents)
        shutil.copy(case, agents / (header(case, "as") or name))
        tried = [["run", "--agents", "agents", "--no-report"]]
        if not (header(case, "serve") or "").startswith("no"):
            tried.append(["serve", "--agents", "agents"])
        return tried
    return [shlex.split(case.read_text(encoding="utf-8").split("\n", 1)[1])]


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_case(name: str, base: Path) -> list[tuple[list[str], subprocess.CompletedProcess, bool]]:
    folder = base / name
    folder.mkdir()
    tried = commands(name, folder)
    before = snapshot(folder)
    out = []
    for args in tried:
        got = cli_process.run(args, cwd=folder, env=ENV, timeout=30)  # -1: it accepted the input, went on running
        out.append((args, got, snapshot(folder) == before))
    return out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """All cases, three at a time (each in its own process)."""
    base = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(NAMES, pool.map(lambda n: run_case(n, base), NAMES), strict=True))


def test_the_corpus_covers_personas_agents_and_the_command_line():
    kinds = {kind: sum(n.startswith(kind) for n in NAMES) for kind in ("persona-", "agent-", "cli-")}
    assert len(NAMES) >= 60 and all(count >= 15 for count in kinds.values()), kinds
    assert all(header(CASES / n, "expect") for n in NAMES), "every case says what its error must mention"


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_clear_line(outcomes, name):
    expect = header(CASES / name, "expect")
    for args, got, unchanged in outcomes[name]:
        command = "voicelab " + shlex.join(args)
        lines = [line for line in got.stderr.splitlines() if line.strip()]
        assert got.returncode == 2, f"{command}: exit {got.returncode}\n{got.stderr}{got.stdout}"
        assert "Traceback" not in got.stderr, f"{command}:\n{got.stderr}"
        assert len(lines) == 1, f"{command}: {len(lines)} lines\n{got.stderr}"
        assert expect in lines[0], f"{command}: {lines[0]!r} does not mention {expect!r}"
        assert not got.stdout.strip(), f"{command} printed: {got.stdout}"
        assert unchanged, f"{command} wrote files although it refused its input"
