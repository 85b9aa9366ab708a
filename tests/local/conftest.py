"""Fixtures of the backend's tests with official clients (JS client, REST SDK, CLI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """`voicelab serve` as its own process, as a developer with an official client starts it;
    its base URL. Afterwards its log must hold no traceback: nothing a client sent crashed it."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "voicelab"), "serve", "--port", "0"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    assert match, (line, log.read_text())
    yield match.group(1)
    proc.terminate()
    proc.wait(timeout=10)
    assert "Traceback" not in log.read_text(), log.read_text()
