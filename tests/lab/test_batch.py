"""Batches and the run store: every call recorded once, torn lines survived, interrupts lose
nothing, resume places only what is missing, a failing call never stops the batch."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from voicelab.lab.batch import resume_batch, run_batch
from voicelab.lab.store import RunStore
from voicelab.lab.tables import load_runs
from voicelab.report import charts

from ..conftest import AGENTS, PERSONAS

QUICK = ["anna-double-charge", "tomasz-merchant-refunded", "jonas-de-entwickler", "kevin-in-a-hurry"]


def call_ids(run_dir: Path) -> list[str]:
    return [json.loads(line)["call_id"] for line in (run_dir / "calls.jsonl").read_text().splitlines() if line]


def test_batch_records_every_call_and_builds_tables(tmp_path: Path):
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=QUICK, repeats=2, concurrency=3,
                        runs_root=str(tmp_path), run_id="t1", progress=False)
    assert not outcome.interrupted
    manifest = json.loads((tmp_path / "t1" / "run.json").read_text())
    assert manifest["state"] == "finished" and manifest["repeats"] == 2 and manifest["sdk_version"].startswith("2.78")
    assert sorted(call_ids(tmp_path / "t1")) == sorted(f"{p}#{r}" for p in QUICK for r in (1, 2))

    tables = load_runs("t1", root=tmp_path)
    calls, turns = tables.calls, tables.turns
    assert len(calls) == 8 and calls["success"].all()
    assert set(calls["style"]) == {"cooperative", "impatient"} and set(calls["language"]) == {"en", "de"}
    assert (calls["latency_p50_ms"] >= 0).all()
    assert len(turns) == calls["turns"].sum() and set(turns["speaker"]) == {"agent", "user"}
    calls_path, _, _ = tables.to_parquet(tmp_path / "export")
    assert len(pd.read_parquet(calls_path)) == 8

    for chart in charts.ALL:
        fig = chart(turns if chart is charts.latency_distribution else calls)
        assert fig.axes and fig.axes[0].get_title(loc="left"), chart.__name__


def test_tables_load_several_runs(tmp_path: Path):
    for run_id in ("a", "b"):
        run_batch(str(PERSONAS), str(AGENTS), persona_ids=QUICK[:2], runs_root=str(tmp_path), run_id=run_id,
                  progress=False)
    tables = load_runs("a", "b", root=tmp_path)
    assert sorted(set(tables.calls["run_id"])) == ["a", "b"] and len(tables.calls) == 4


def test_failing_call_does_not_stop_the_batch(tmp_path: Path, monkeypatch):
    from voicelab.lab import batch as batch_module
    from voicelab.local import Fault, LocalBackend

    real = LocalBackend

    class Faulty(real):  # the real backend with one dropped connection armed
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.faults.add(Fault(kind="drop", after_agent_turns=2, agent_id="chargeback"))

    monkeypatch.setattr("voicelab.local.LocalBackend", Faulty)
    outcome = batch_module.run_batch(str(PERSONAS), str(AGENTS), persona_ids=QUICK, concurrency=1,
                                     runs_root=str(tmp_path), run_id="f", progress=False)
    results = outcome.results
    assert len(results) == 4
    failed = [r for r in results if r.status == "failed"]
    assert len(failed) == 1 and failed[0].end_reason == "disconnected" and failed[0].transcript


def _when_agents_have_spoken(server, conversations: int, then) -> threading.Thread:
    """Call `then` once the backend has sent the agent's first words in `conversations`
    conversations (and half a second more for them to reach the client): an interrupt that lands
    mid-call however loaded the machine is, where a fixed timer would land before the greeting."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids = [c["conversation_id"] for c in server.history.page(page_size=100)["conversations"]]
            records = [r for r in map(server.history.get, ids) if r is not None]
            if sum(any(t["role"] == "agent" and t["message"] for t in r.transcript) for r in records) >= conversations:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_interrupt_cancels_in_flight_calls_and_resume_finishes(tmp_path: Path, local_backend):
    server = local_backend()
    cancel = threading.Event()
    personas = ["silent-line-chargeback", "silent-applicant", "anna-double-charge"]
    _when_agents_have_spoken(server, 2, cancel.set)
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=personas, concurrency=2, runs_root=str(tmp_path),
                        run_id="i", progress=False, cancel_event=cancel, local_url=server.base_url)
    assert outcome.interrupted
    run = RunStore(tmp_path).open("i")
    assert run.manifest.state == "interrupted"
    recorded = run.results()
    assert {r.end_reason for r in recorded} == {"cancelled"} and len(recorded) == 2
    assert all(r.status == "failed" and r.transcript for r in recorded), "partial transcripts are kept"

    resumed = resume_batch("i", runs_root=str(tmp_path), progress=False)
    assert not resumed.interrupted and resumed.run.manifest.state == "finished"
    final = RunStore(tmp_path).open("i").results()
    assert sorted(r.call_id for r in final) == sorted(f"{p}#1" for p in personas)
    assert all(r.end_reason != "cancelled" for r in final)
    # batches freeze what was loaded while they run (benchmarks/backend_load.py); a notebook's
    # kernel gets it back for the collector afterwards, interrupted or not
    assert gc.get_freeze_count() == 0


def test_crash_then_resume_has_every_call_exactly_once(tmp_path: Path):
    """Kill -9 a real `voicelab run` mid-batch, tear its last line, then resume. (Five quick
    personas of one agent, three times: 15 calls, none waiting out a silence.)"""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    chargeback = ["anna-double-charge", "marek-already-closed", "sven-wrong-person", "kevin-in-a-hurry",
                  "jan-wants-a-person"]
    cmd = [sys.executable, "-m", "voicelab", "run", "--personas", str(PERSONAS), "--agents", str(AGENTS),
           "--repeats", "3", "--concurrency", "2", "--latency-ms", "150", "--run-id", "crash", "--runs",
           str(tmp_path), "--no-report", "--persona", *chargeback]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    calls = tmp_path / "crash" / "calls.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not calls.exists() or len(calls.read_text().splitlines()) < 4):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(calls.read_text().splitlines())
    assert 4 <= before < 3 * len(chargeback), "the crash must happen mid-run"
    with open(calls, "a") as f:
        f.write('{"conversation_id": "conv_torn", "status": "compl')  # a torn write

    resume = subprocess.run([sys.executable, "-m", "voicelab", "run", "--resume", "crash", "--runs",
                             str(tmp_path), "--no-report"], env=env, capture_output=True, text=True, timeout=120)
    assert resume.returncode == 0, resume.stderr
    assert "1 unreadable line" in resume.stderr and "torn write" in resume.stderr
    results = RunStore(tmp_path).open("crash").results()
    ids = [r.call_id for r in results]
    expected = {f"{p}#{r}" for p in chargeback for r in (1, 2, 3)}
    assert sorted(ids) == sorted(expected), "every call exactly once"
    lines = calls.read_text().splitlines()
    assert len(lines) == len(expected) + 1, "nothing rewritten: the torn line stays, on a line of its own"


def test_ctrl_c_on_the_cli_marks_the_run_interrupted(tmp_path: Path):
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicelab", "run", "--personas", str(PERSONAS), "--agents", str(AGENTS),
         "--persona", "anna-double-charge", "kevin-in-a-hurry", "marek-already-closed", "--concurrency", "2",
         "--latency-ms", "30000", "--run-id", "sigint", "--runs", str(tmp_path)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    progress = ""
    deadline = time.time() + 60
    # the progress bar: two calls in flight, neither of which can end before its agent's first
    # answer, 30 s after the caller's first words (so the interrupt finds them in flight, however
    # late the bar is redrawn on a loaded machine)
    while time.time() < deadline and "running=2" not in progress:
        progress += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    err = progress + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Task was destroyed" not in err
    assert "voicelab run --resume sigint" in out
    run = RunStore(tmp_path).open("sigint")
    assert run.manifest.state == "interrupted"
    reasons = [r.end_reason for r in run.results()]
    # the calls in flight are stored as cancelled; the third never started
    assert reasons == ["cancelled", "cancelled"], reasons


def test_missing_settings_fail_before_a_run_exists(tmp_path: Path, monkeypatch):
    import pytest

    from voicelab.spec.errors import ConfigError

    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        run_batch(str(PERSONAS), str(AGENTS), persona_ids=QUICK[:1], backend="elevenlabs", runs_root=str(tmp_path),
                  progress=False)
    monkeypatch.setenv("ELEVENLABS_API_KEY", "fake-key")
    with pytest.raises(ConfigError, match="ELEVENLABS_AGENT_ID"):
        run_batch(str(PERSONAS), str(AGENTS), persona_ids=QUICK[:1], backend="elevenlabs", runs_root=str(tmp_path),
                  progress=False)
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    with pytest.raises(ConfigError, match="ELEVENLABS_PHONE_NUMBER_ID"):
        run_batch(str(PERSONAS), str(AGENTS), persona_ids=QUICK[:1], caller="phone", backend="elevenlabs",
                  runs_root=str(tmp_path), progress=False)
    assert not list(tmp_path.iterdir()), "no run folder for a run that could not start"
