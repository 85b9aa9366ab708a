"""A store that fails under a run: read-only, full before the run, full in the middle of it, a
process killed while placing, ids too long for a folder, paths outside the store, bugs.

Real file systems (a tmpfs mounted read-only, or filled up while calls are placed) and real
`voicelab` processes; a crash is never a verdict, and a result that was placed is never lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voicelab.lab.store import Run, RunStore
from voicelab.spec.errors import StoreNotWritable
from voicelab.spec.models import CallResult, RunManifest, RunSession
from voicelab.surfaces.cli import main as cli

from .. import cli_process
from ..conftest import AGENTS, PERSONAS

VOICELAB = [sys.executable, "-m", "voicelab"]
BRISK = ["anna-double-charge", "tomasz-merchant-refunded", "olga-credit-question"]


def voicelab(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*VOICELAB, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False):
    """A real small file system at `path` (root can mount one; CI runs as root)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk under `folder` is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def one_line(stderr: str) -> str:
    """The one line a fault prints (the progress bar's lines aside)."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and not line.startswith("calls:")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def result(call_id: str, **fields) -> CallResult:
    fields = {"duration_seconds": 1.0, "transcript": [], "agent_id": "a", "backend": "local", "caller": "scripted",
              "mode": "text", "started_at": "2026-12-07T00:00:00.000Z", "end_reason": "agent_ended", **fields}
    return CallResult(conversation_id=f"conv-{call_id}", status="completed", call_id=call_id, persona_id="p",
                      run_id="r", success=True, **fields)


def test_a_read_only_store_refuses_the_run_before_anything_is_placed(tmp_path: Path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as runs:
        out = voicelab("run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", BRISK[0],
                       "--runs", str(runs), "--no-report")
        assert out.returncode == 2, out.stderr
        line = one_line(out.stderr)
        assert str(runs) in line and "Read-only file system" in line and "--runs DIR" in line
        assert "calls" not in out.stdout, "no call was placed"


def test_a_store_that_fills_up_mid_run_stops_in_one_line_keeping_every_result(tmp_path: Path):
    unsaved = tmp_path / "unsaved"
    with tmpfs(tmp_path / "disk", "8m") as runs:
        proc = subprocess.Popen(
            [*VOICELAB, "run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", *BRISK,
             "--repeats", "4", "--concurrency", "2", "--latency-ms", "150", "--run-id", "fills", "--runs", str(runs),
             "--no-report"], env={**os.environ, "VOICELAB_UNSAVED_DIR": str(unsaved)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        calls = runs / "fills" / "calls.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and not (calls.exists() and calls.read_bytes().count(b"\n") >= 1):
            time.sleep(0.02)
        filler = fill(runs)  # the disk is full from here on
        out, err = proc.communicate(timeout=120)

        assert proc.returncode == 2, err
        line = one_line(err)
        assert str(calls) in line and "No space left on device" in line and "free some disk space" in line
        kept_files = list(unsaved.glob("fills-*.jsonl"))
        assert len(kept_files) == 1 and str(kept_files[0]) in line
        stored = [CallResult.model_validate_json(raw) for raw in calls.read_bytes().splitlines() if raw.strip()]
        kept = [CallResult.model_validate_json(raw) for raw in kept_files[0].read_bytes().splitlines()]
        assert stored and kept, "calls were stored before the disk filled, and kept after"
        assert calls.read_bytes().endswith(b"\n"), "no torn line"
        assert all(r.conversation_id for r in kept), "each kept result is a call that happened"
        assert len(stored) + len(kept) < 12, "no call was started once the store failed"
        assert not list((runs / "fills").glob("run.json*.tmp"))

        filler.unlink()  # room again: the resume stores the kept results first, then places the rest
        resumed = voicelab("run", "--resume", "fills", "--runs", str(runs), "--no-report",
                           env={"VOICELAB_UNSAVED_DIR": str(unsaved)})
        assert resumed.returncode == 0, resumed.stderr
        ids = [json.loads(raw)["call_id"] for raw in calls.read_bytes().splitlines() if raw.strip()]
        assert sorted(ids) == sorted(f"{p}#{r}" for p in BRISK for r in range(1, 5)), "each call exactly once"
        assert not kept_files[0].exists()
        sessions = RunStore(runs).open("fills").manifest.sessions
        assert sessions[0].state == "interrupted" and sessions[-1].state == "finished"


def test_a_failed_append_is_rolled_back_so_no_line_is_torn(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "64k") as folder:
        run = Run(folder, RunManifest(run_id="r", personas=["p"]))
        run.append(result("p#1"))
        filler = fill(folder)
        filler.write_bytes(b"\0" * (filler.stat().st_size - 8192))  # room for part of a line
        before = run.calls_path.read_bytes()
        with pytest.raises(StoreNotWritable) as raised:
            run.append(result("p#2", transcript=[{"speaker": "agent", "text": "é" * 6000, "timestamp": 0.0}]))
        assert str(run.calls_path) in str(raised.value) and raised.value.path == str(run.calls_path)
        assert run.calls_path.read_bytes() == before, "the part that fitted was cut back"
        filler.unlink()
        run.append(result("p#3"))
        assert [r.call_id for r in run.results()] == ["p#1", "p#3"] and run.unreadable_lines == []


def test_a_manifest_that_cannot_be_written_leaves_no_temporary_file(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "64k") as folder:
        run = Run(folder, RunManifest(run_id="r", personas=["p" * 40] * 3000))
        with pytest.raises(StoreNotWritable):
            run.save_manifest()
        assert sorted(p.name for p in folder.iterdir()) == []


def test_writers_checking_the_store_at_once_never_trip_on_each_others_probe(tmp_path: Path):
    """Two resumes of one run check the store before one of them wins its lock: each must see a
    writable store (the loser is then refused by the lock, not told the disk is broken)."""
    import threading

    run = RunStore(tmp_path).create(RunManifest(run_id="r", personas=["p"]))
    errors: list[BaseException] = []

    def check_many() -> None:
        for _ in range(150):
            try:
                Run(run.path, run.manifest).check_writable()
            except StoreNotWritable as exc:
                errors.append(exc)

    threads = [threading.Thread(target=check_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in run.path.iterdir()) == ["calls.jsonl", "run.json"], "no probe is left behind"


def _crashed(tmp_path: Path, stored: int) -> Path:
    """A run as a kill -9'd process leaves it: run.json says running, its results are on disk."""
    manifest = RunManifest(run_id="crashed", personas=["p"], repeats=5, state="running",
                           sessions=[RunSession(calls_planned=5)])
    run = RunStore(tmp_path).create(manifest)
    for n in range(stored):
        run.append(result(f"p#{n + 1}"))
    (run.path / ".lock").write_text("process 1")
    return run.path


def test_a_run_whose_process_died_is_repaired_when_opened(tmp_path: Path):
    _crashed(tmp_path, 3)
    run = RunStore(tmp_path).open("crashed")
    assert run.manifest.state == "interrupted"
    session = run.manifest.sessions[0]
    assert (session.state, session.calls_stored) == ("interrupted", 3)
    assert session.stopped_by.startswith("crash") and session.ended_at
    on_disk = json.loads((tmp_path / "crashed" / "run.json").read_text())
    assert on_disk["state"] == "interrupted", "the repair is saved"


def test_a_run_being_placed_is_not_repaired(tmp_path: Path):
    import fcntl

    path = _crashed(tmp_path, 2)
    fd = os.open(path / ".lock", os.O_RDWR)  # a live process holds the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = RunStore(tmp_path).open("crashed")
        assert run.manifest.state == "running" and run.manifest.sessions[0].state == "running"
    finally:
        os.close(fd)


def test_ids_too_long_for_a_folder_and_paths_outside_the_store_are_one_line_each(tmp_path: Path):
    long = "r" * 300
    for args in (["run", "--run-id", long, "--no-report"], ["report", long], ["run", "--resume", long]):
        out = cli_process.run([*args, "--runs", str(tmp_path / "runs")])
        assert out.returncode == 2 and "too long" in one_line(out.stderr), (args, out.stderr)

    elsewhere = tmp_path / "elsewhere" / "run-x"
    RunStore(elsewhere.parent).create(RunManifest(run_id="run-x", personas=["p"]))
    before = sorted(p.name for p in elsewhere.iterdir())
    for args in (["report", str(elsewhere)], ["compare", str(elsewhere), str(elsewhere)]):
        out = cli_process.run([*args, "--runs", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")])
        assert out.returncode == 2 and "outside the run store" in one_line(out.stderr), (args, out.stderr)
    assert sorted(p.name for p in elsewhere.iterdir()) == before, "nothing written beside a foreign run"


def test_a_bug_exits_3_with_one_line_naming_its_traceback_log(tmp_path: Path, monkeypatch, capsys):
    def broken(args):
        return {}["missing"]

    monkeypatch.setenv("VOICELAB_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setitem(cli.COMMANDS, "personas", broken)
    assert cli.main(["personas"]) == 3
    line = one_line(capsys.readouterr().err)
    logs = list((tmp_path / "logs").glob("voicelab-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in line and "KeyError" in line
    assert "Traceback" in logs[0].read_text() and "broken" in logs[0].read_text()


def test_the_gate_decides_the_exit_status_when_the_report_cannot_be_written(tmp_path: Path):
    personas = tmp_path / "personas.yaml"
    original = (PERSONAS / "chargeback.yaml").read_text()
    personas.write_text(original.replace('agent_says: ["Premium Gym Membership",',
                                         'agent_says: ["a phrase the agent never says", "Premium Gym Membership",'))
    not_a_folder = tmp_path / "reports"
    not_a_folder.write_text("a file where the reports folder should be")
    out = voicelab("run", "--personas", str(personas), "--agents", str(AGENTS), "--persona", BRISK[0],
                   "--runs", str(tmp_path / "runs"), "--reports", str(not_a_folder))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "report not written" in out.stdout and "gate failed: anna-double-charge" in out.stdout
    assert "Traceback" not in out.stderr
    shutil.rmtree(tmp_path / "runs")


def test_a_persona_id_too_long_for_a_file_name_is_refused_at_load(tmp_path: Path):
    from voicelab.spec.datasets import load_dataset
    from voicelab.spec.errors import DatasetError

    personas = tmp_path / "personas.yaml"
    original = (PERSONAS / "chargeback.yaml").read_text()
    personas.write_text(original.replace("id: anna-double-charge", "id: " + "a" * 300))
    with pytest.raises(DatasetError) as raised:
        load_dataset(personas, AGENTS)
    assert "field 'id'" in str(raised.value) and "at most 64" in str(raised.value)


@pytest.mark.slow
def test_a_recording_that_cannot_be_written_loses_the_recording_not_the_call(tmp_path: Path, dataset, backend):
    from voicelab.harness.call import Call

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the recordings folder should be")
    import threading

    request = dataset.request("anna-double-charge", mode="voice", audio_dir=str(not_a_folder / "audio"))
    call = Call(request, base_url=backend.base_url)
    threading.Timer(4, call.stop).start()  # the caller hangs up after the agent's greeting
    result = call.run()
    assert result.conversation_id and result.transcript, "the call that happened is kept"
    assert result.end_reason == "caller_ended"
    assert result.audio_path is None
