"""Runs placed on a Dask cluster (`--cluster`): a real LocalCluster of worker processes over TCP
on 127.0.0.1, text mode, driven through the `voicelab` command in its own process. What is
asserted is what a user relies on: one store with every call exactly once (also when a worker
process is killed mid-run, or the run is stopped and resumed), the cluster in run.json and the
worker in each result, and one line with exit 2 for a cluster that cannot be used."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voicelab.lab.cluster import address_problem
from voicelab.surfaces.cli.main import main

from .. import cli_process
from ..conftest import AGENTS, PERSONAS

ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
#: Seven chargeback callers that finish in a few seconds each at 300 ms per agent turn.
BRISK = ["anna-double-charge", "tomasz-merchant-refunded", "olga-credit-question", "sven-wrong-person",
         "maria-confused-subscription", "kevin-in-a-hurry", "leo-talks-over"]


def start(tmp_path: Path, run_id: str, *extra: str) -> subprocess.Popen:
    """`voicelab run` of 21 calls on a cluster of two worker processes, two calls at once each
    (in a process group of its own, as a terminal's foreground job is)."""
    return subprocess.Popen(
        [sys.executable, "-m", "voicelab", "run", "--personas", str(PERSONAS), "--agents", str(AGENTS),
         "--persona", *BRISK, "--repeats", "3", "--concurrency", "2", "--latency-ms", "300", "--run-id", run_id,
         "--runs", str(tmp_path), "--no-report", "--cluster", "local:2", *extra],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)


def stored(tmp_path: Path, run_id: str) -> list[dict]:
    path = tmp_path / run_id / "calls.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def wait_for_results(tmp_path: Path, run_id: str, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while len(stored(tmp_path, run_id)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"fewer than {count} results after {timeout} s"
        time.sleep(0.1)


def expected_ids() -> set[str]:
    return {f"{persona}#{repeat}" for persona in BRISK for repeat in (1, 2, 3)}


def test_cluster_addresses_are_checked_before_anything_is_imported_or_reached():
    assert address_problem("local:2") is None
    assert address_problem("tcp://scheduler.example.org:8786") is None
    assert address_problem("10.0.0.5:8786") is None
    assert "local:N" in address_problem("local:0")
    assert "local:N" in address_problem("local:many")
    assert "tcp://HOST:PORT" in address_problem("scheduler.example.org")


def test_without_dask_the_option_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    code = main(["run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", "anna-double-charge",
                 "--cluster", "local:1", "--runs", str(tmp_path / "runs"), "--no-report"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'voicelab[cluster]'" in err, err
    assert not (tmp_path / "runs").exists()  # nothing was created


@pytest.mark.slow  # the scheduler is given CONNECT_TIMEOUT_S (10 s) to answer
def test_an_unreachable_scheduler_is_one_line_naming_it_and_exit_2(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    result = cli_process.run(["run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona",
                              "anna-double-charge", "--cluster", address, "--runs", "runs", "--no-report"],
                             cwd=tmp_path, env=ENV, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and address in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_run_on_two_local_workers_stores_every_call_once_and_names_cluster_and_workers(tmp_path):
    proc = start(tmp_path, "spread")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, (out, err)
    results = stored(tmp_path, "spread")
    ids = [r["call_id"] for r in results]
    assert sorted(ids) == sorted(expected_ids()), collections.Counter(ids)  # each call exactly once
    assert all(r["worker"] and r["worker"].startswith("tcp://127.0.0.1:") for r in results)
    assert len({r["worker"] for r in results}) == 2  # both workers placed calls
    manifest = json.loads((tmp_path / "spread" / "run.json").read_text())
    assert manifest["state"] == "finished"
    sessions = [(s["cluster"], s["calls_planned"], s["calls_stored"]) for s in manifest["sessions"]]
    assert sessions == [("local:2", 21, 21)]
    assert "dask: 2 workers at tcp://127.0.0.1:" in err


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_only_its_calls_which_are_placed_again(tmp_path):
    import psutil

    proc = start(tmp_path, "killed")
    wait_for_results(tmp_path, "killed", 3, proc)
    # a LocalCluster's nannies live in the client process; each worker is a process it spawned
    workers = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2, workers
    os.kill(workers[0].pid, signal.SIGKILL)  # mid-run: it holds calls in progress
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, (out, err)
    results = stored(tmp_path, "killed")
    ids = [r["call_id"] for r in results]
    assert sorted(ids) == sorted(expected_ids()), collections.Counter(ids)  # nothing lost, nothing twice
    assert all(r["end_reason"] != "cancelled" and r["status"] == "completed" for r in results)
    # the killed worker's calls came back from another worker (its replacement or the other one)
    assert len({r["worker"] for r in results}) >= 2


@pytest.mark.slow
@pytest.mark.parametrize(("how", "code", "name"), [("SIGTERM to the client", 143, "SIGTERM"),
                                                   ("Ctrl+C: SIGINT to the whole process group", 130, "Ctrl+C")])
def test_a_stopped_cluster_run_keeps_what_finished_and_resumes_on_the_cluster(tmp_path, how, code, name):
    proc = start(tmp_path, "stopped")
    wait_for_results(tmp_path, "stopped", 3, proc)
    if code == 143:
        proc.send_signal(signal.SIGTERM)
    else:  # the workers get it too: they must not die of it, the client ends their calls
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out, err)
    assert "Traceback" not in err, err
    first = stored(tmp_path, "stopped")
    assert 3 <= len(first) and len({r["call_id"] for r in first}) == len(first)
    assert any(r["end_reason"] == "cancelled" for r in first)  # calls in progress, ended and stored
    manifest = json.loads((tmp_path / "stopped" / "run.json").read_text())
    assert manifest["state"] == "interrupted" and manifest["sessions"][0]["stopped_by"] == name
    resumed = subprocess.run([sys.executable, "-m", "voicelab", "run", "--resume", "stopped", "--runs", str(tmp_path),
                              "--no-report", "--cluster", "local:2"], env=ENV, capture_output=True, text=True,
                             timeout=240, cwd=tmp_path)
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    finished = {r["call_id"] for r in first if r["end_reason"] != "cancelled"}
    again = [r["call_id"] for r in stored(tmp_path, "stopped")[len(first):]]
    assert sorted(again) == sorted(expected_ids() - finished)  # only the missing calls, each once
    sessions = json.loads((tmp_path / "stopped" / "run.json").read_text())["sessions"]
    assert [(s["state"], s["cluster"]) for s in sessions] == [("interrupted", "local:2"), ("finished", "local:2")]


SHORT_AGENT = """\
id: short
name: Short agent
first_message: "Question 1?"
prompt: Ask one question.
flow:
  start: q1
  steps:
    q1: {intents: [{when: [answer], goto: done}], on_no_match: done, max_reprompts: 0}
    done: {say: "Thanks, goodbye.", end_call: true, outcome: success}
"""
SHORT_PERSONA = """\
personas:
  - id: short-caller
    name: Short caller
    summary: Answers the one question.
    agent: short
    caller:
      style: cooperative
      replies: [{when: ["question"], say: "Answer."}]
    expect:
      ended_by: agent
"""


@pytest.mark.slow
def test_a_voice_call_on_a_worker_sends_its_recording_back_into_the_run_folder(tmp_path):
    """No timing asserted: where the recording ends up, and that the client wrote it."""
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "short.yaml").write_text(SHORT_AGENT, encoding="utf-8")
    (tmp_path / "personas.yaml").write_text(SHORT_PERSONA, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "voicelab", "run", "--personas", "personas.yaml", "--agents", "agents",
                           "--mode", "voice", "--run-id", "voiced", "--runs", "runs", "--no-report",
                           "--cluster", "local:1"], env=ENV, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    [result] = stored(tmp_path / "runs", "voiced")
    assert result["worker"] and result["audio_path"] == str(Path("runs") / "voiced" / "audio" / "short-caller-1.wav")
    recording = tmp_path / result["audio_path"]
    assert recording.is_file() and recording.read_bytes()[:4] == b"RIFF"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_readmes_three_commands_a_scheduler_a_worker_and_a_run_on_their_address(tmp_path):
    """`dask scheduler`, `dask worker ADDRESS`, `voicelab run --cluster ADDRESS`, on 127.0.0.1."""
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    logs = open(tmp_path / "dask.log", "w")  # noqa: SIM115 - closed below
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], env=ENV, stdout=logs, stderr=logs, cwd=tmp_path)
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--name", "machine-b"],
                              env=ENV, stdout=logs, stderr=logs, cwd=tmp_path)
    try:
        done = subprocess.run([sys.executable, "-m", "voicelab", "run", "--personas", str(PERSONAS), "--agents",
                               str(AGENTS), "--persona", *BRISK[:3], "--repeats", "2", "--run-id", "remote",
                               "--runs", str(tmp_path), "--no-report", "--cluster", address],
                              env=ENV, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert done.returncode == 0, (done.stdout, done.stderr)
        results = stored(tmp_path, "remote")
        assert sorted(r["call_id"] for r in results) == sorted(f"{p}#{n}" for p in BRISK[:3] for n in (1, 2))
        assert len({r["worker"] for r in results}) == 1 and results[0]["worker"].startswith("tcp://127.0.0.1:")
        manifest = json.loads((tmp_path / "remote" / "run.json").read_text())
        assert manifest["sessions"][-1]["cluster"] == address
        assert scheduler.poll() is None and worker.poll() is None  # the cluster outlives the run
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        logs.close()
