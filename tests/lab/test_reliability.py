"""Runs that lose nothing and place nothing twice, whatever stops them, and exit codes CI can
gate on: real `voicelab` processes, real signals, two processes racing for one run."""

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

from voicelab.lab.store import RunStore
from voicelab.lab.tables import load_runs
from voicelab.local import LocalBackend

from ..conftest import AGENTS, PERSONAS

pytestmark = pytest.mark.slow  # real voicelab processes, stopped and raced

ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
VOICELAB = [sys.executable, "-m", "voicelab"]


def voicelab(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*VOICELAB, *args], env=env or ENV, capture_output=True, text=True, timeout=timeout)


#: Seven chargeback callers that finish in about a second each.
BRISK = ["anna-double-charge", "tomasz-merchant-refunded", "olga-credit-question", "sven-wrong-person",
         "maria-confused-subscription", "kevin-in-a-hurry", "leo-talks-over"]


def start_run(tmp_path: Path, run_id: str, *extra: str) -> subprocess.Popen:
    """A batch of 21 calls, slow enough (200 ms per agent turn) to stop mid-way."""
    return subprocess.Popen(
        [*VOICELAB, "run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", *BRISK,
         "--repeats", "3", "--concurrency", "4", "--latency-ms", "200", "--run-id", run_id, "--runs", str(tmp_path),
         "--no-report", *extra], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lines(path: Path, count: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and (not path.exists() or len(path.read_bytes().splitlines()) < count):
        time.sleep(0.05)


def call_ids(tmp_path: Path, run_id: str) -> list[str]:
    lines = (tmp_path / run_id / "calls.jsonl").read_bytes().splitlines()
    return [json.loads(line)["call_id"] for line in lines if line.strip()]


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_a_stop_signal_is_handled_like_ctrl_c_and_the_run_resumes(tmp_path: Path, sig, code, name):
    proc = start_run(tmp_path, "stopped")
    wait_for_lines(tmp_path / "stopped" / "calls.jsonl", 3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Task was destroyed" not in err
    assert f"interrupted ({name})" in out and "voicelab run --resume stopped" in out
    run = RunStore(tmp_path).open("stopped")
    assert run.manifest.state == "interrupted"
    first = run.manifest.sessions[0]
    assert (first.state, first.stopped_by, first.calls_planned) == ("interrupted", name, 21)
    assert first.calls_stored == len(call_ids(tmp_path, "stopped")) < 21
    assert "cancelled" in {r.end_reason for r in run.results()}, "calls in flight are recorded as cancelled"

    resumed = voicelab("run", "--resume", "stopped", "--runs", str(tmp_path), "--no-report")
    assert resumed.returncode == 0, resumed.stderr  # every call succeeded in the end
    run = RunStore(tmp_path).open("stopped")
    assert run.manifest.state == "finished"
    assert [(s.resumed, s.state) for s in run.manifest.sessions] == [(False, "interrupted"), (True, "finished")]
    finished = {r.call_id for r in run.results()}
    assert len(finished) == 21 and all(r.end_reason != "cancelled" for r in run.results())


def test_two_resumes_at_once_place_nothing_twice(tmp_path: Path):
    proc = start_run(tmp_path, "race")
    wait_for_lines(tmp_path / "race" / "calls.jsonl", 2)
    proc.send_signal(signal.SIGKILL)  # the holder dies: its lock must die with it
    proc.wait()
    stored = collections.Counter(call_ids(tmp_path, "race"))
    crashed = RunStore(tmp_path).open("race")  # opened after the crash: its record is repaired
    assert crashed.manifest.state == "interrupted", "a dead process's run is not shown as running"
    session = crashed.manifest.sessions[0]
    assert (session.state, session.calls_stored) == ("interrupted", sum(stored.values()))

    resumes = [subprocess.Popen([*VOICELAB, "run", "--resume", "race", "--runs", str(tmp_path), "--no-report"],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in resumes]
    refused = [err for code, err in outcomes if code == 2]
    assert len(refused) == 1, outcomes
    assert "is being placed right now by process" in refused[0] and len(refused[0].strip().splitlines()) == 1

    ids = collections.Counter(call_ids(tmp_path, "race"))
    placed_by_resume = ids - stored
    assert set(ids) == {f"{p}#{r}" for p in BRISK for r in (1, 2, 3)}, "0 lost"
    assert all(n == 1 for n in placed_by_resume.values()), f"placed twice: {placed_by_resume}"


def test_a_line_torn_inside_a_multibyte_character_is_skipped_on_resume_and_in_reports(tmp_path: Path):
    runs = tmp_path / "runs"
    done = voicelab("run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", "jonas-de-entwickler",
                    "anna-double-charge", "--run-id", "de", "--runs", str(runs), "--no-report")
    assert done.returncode == 0, done.stderr
    calls = runs / "de" / "calls.jsonl"
    german = next(line for line in calls.read_bytes().splitlines() if "ü".encode() in line)
    with open(calls, "ab") as f:
        f.write(german[:german.index("ü".encode()) + 1])  # cut between the two bytes of "ü"

    resumed = voicelab("run", "--resume", "de", "--runs", str(runs), "--no-report")
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert "1 unreadable line (3)" in resumed.stderr
    assert len(load_runs("de", root=runs).results) == 2

    report = voicelab("report", "de", "--runs", str(runs), "--reports", str(tmp_path / "reports"))
    assert report.returncode == 0 and "1 unreadable line" in report.stderr, report.stderr
    page = (tmp_path / "reports" / "de.html").read_text(encoding="utf-8")
    assert "calls.jsonl has 1 unreadable line (3)" in page
    strict = voicelab("report", "de", "--runs", str(runs), "--reports", str(tmp_path / "reports"), "--strict")
    assert strict.returncode == 1


def failing_personas(tmp_path: Path) -> Path:
    """Two personas: one the agent satisfies, one whose expectation it cannot meet."""
    path = tmp_path / "personas.yaml"
    path.write_text("""personas:
  - id: passes
    name: Ann Lee
    agent: chargeback
    summary: cooperative cardholder
    variables: {first_name: Ann, last_name: Lee, product_name: Headphones, chargeback_reason: duplicate charge,
                phone_number: "+48601234567"}
    expect: {agent_says: ["Ann"]}
  - id: fails
    name: Ann Lee
    agent: chargeback
    summary: expects what the agent never says
    variables: {first_name: Ann, last_name: Lee, product_name: Headphones, chargeback_reason: duplicate charge,
                phone_number: "+48601234567"}
    expect: {agent_says: ["a sentence no agent says"]}
""", encoding="utf-8")
    return path


def test_exit_codes_gate_ci(tmp_path: Path):
    personas = failing_personas(tmp_path)
    common = ["run", "--personas", str(personas), "--agents", str(AGENTS), "--runs", str(tmp_path / "runs"),
              "--no-report"]
    half = voicelab(*common, "--run-id", "half")
    assert half.returncode == 1, half.stderr
    assert "2 calls: 1 passed (50%), 1 failed their checks, 0 could not be placed" in half.stdout
    assert voicelab(*common, "--run-id", "enough", "--fail-under", "50%").returncode == 0
    assert voicelab(*common, "--run-id", "short", "--fail-under", "0.75").returncode == 1
    only_good = voicelab(*common, "--run-id", "good", "--persona", "passes")
    assert only_good.returncode == 0, only_good.stderr
    bad = voicelab(*common, "--fail-under", "150%")
    assert bad.returncode == 2 and "outside 0..1" in bad.stderr
    resumed_with = voicelab("run", "--resume", "good", "--runs", str(tmp_path / "runs"), "--repeats", "3")
    assert resumed_with.returncode == 2 and "--repeats cannot change a run being resumed" in resumed_with.stderr


def test_a_refused_api_key_stops_a_hosted_run_before_any_call(tmp_path: Path):
    with LocalBackend(AGENTS, require_key="the-right-key") as platform:
        env = {**ENV, "ELEVENLABS_BASE_URL": platform.base_url, "ELEVENLABS_API_KEY": "sk_wrong",
               "ELEVENLABS_AGENT_ID": "chargeback"}
        got = voicelab("run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", "anna-double-charge",
                       "--backend", "elevenlabs", "--runs", str(tmp_path / "runs"), "--no-report", env=env)
        assert got.returncode == 2, got.stderr
        line = got.stderr.strip()
        assert len(line.splitlines()) == 1 and "HTTP 401" in line and "ELEVENLABS_API_KEY" in line
        assert "sk_wrong" not in got.stderr + got.stdout
        assert not (tmp_path / "runs").exists(), "nothing placed, no run folder"
        assert len(platform.history) == 0
        right = voicelab("run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona",
                         "anna-double-charge", "--backend", "elevenlabs", "--runs", str(tmp_path / "runs"),
                         "--no-report", env={**env, "ELEVENLABS_API_KEY": "the-right-key",
                                             "ELEVENLABS_REQUIRES_AUTH": "true"})
        assert right.returncode == 0, right.stderr


def test_runs_started_in_the_same_second_get_their_own_ids(tmp_path: Path):
    procs = [subprocess.Popen([*VOICELAB, "run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona",
                               "anna-double-charge", "--runs", str(tmp_path), "--no-report"], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    runs = RunStore(tmp_path).list()
    assert len(runs) == 3 and all(len(call_ids(tmp_path, r)) == 1 for r in runs)


def test_load_runs_takes_ids_several_or_a_list(tmp_path: Path):
    for run_id in ("a", "b"):
        assert voicelab("run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", "anna-double-charge",
                        "--run-id", run_id, "--runs", str(tmp_path), "--no-report").returncode == 0
    assert len(load_runs("a", root=tmp_path).calls) == 1
    assert len(load_runs("a", "b", root=tmp_path).calls) == 2
    assert len(load_runs(["a", "b"], root=tmp_path).calls) == 2


def kernels(folder: Path) -> int:
    """Jupyter kernels running in `folder` (a report's kernel runs in its run's folder): only this
    test's, whatever else runs on the machine (other tests in parallel included)."""
    pids = subprocess.run(["pgrep", "-f", "ipykernel_launcher"], capture_output=True, text=True).stdout.split()
    count = 0
    for pid in pids:
        try:
            count += Path(os.readlink(f"/proc/{pid}/cwd")) == folder.resolve()
        except OSError:  # ended meanwhile
            continue
    return count


def test_serve_and_report_stop_cleanly_on_sigterm(tmp_path: Path):
    serve = subprocess.Popen([*VOICELAB, "serve", "--agents", str(AGENTS)], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert "local backend at http://127.0.0.1:" in serve.stdout.readline()
    serve.send_signal(signal.SIGTERM)
    _, err = serve.communicate(timeout=20)
    assert serve.returncode == 143 and err.strip() == "voicelab local backend stopped (SIGTERM)", err

    runs = tmp_path / "runs"
    assert voicelab("run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona", "anna-double-charge",
                    "--run-id", "r", "--runs", str(runs), "--no-report").returncode == 0
    report = subprocess.Popen([*VOICELAB, "report", "r", "--runs", str(runs), "--reports", str(tmp_path / "out")],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not kernels(runs / "r") and time.time() < deadline:  # until the report's kernel runs its cells
        time.sleep(0.1)
    assert kernels(runs / "r") == 1, "the report's kernel runs in the run's folder"
    report.send_signal(signal.SIGTERM)
    _, err = report.communicate(timeout=60)
    assert report.returncode == 143 and err.strip() == "voicelab: interrupted (SIGTERM)", err
    deadline = time.time() + 10
    while kernels(runs / "r") and time.time() < deadline:
        time.sleep(0.2)
    assert kernels(runs / "r") == 0, "the report's kernel was left running"


def test_a_second_signal_stops_at_once_and_the_run_stays_consistent(tmp_path: Path):
    proc = start_run(tmp_path, "twice")
    wait_for_lines(tmp_path / "twice" / "calls.jsonl", 2)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)  # impatient: do not wait for the calls in flight
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "Traceback" not in err, err
    run = RunStore(tmp_path).open("twice")
    assert run.manifest.state == "interrupted" and run.manifest.sessions[0].stopped_by == "SIGTERM"
    assert run.results() and not run.unreadable_lines

    resumed = voicelab("run", "--resume", "twice", "--runs", str(tmp_path), "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    finished = [r for r in RunStore(tmp_path).open("twice").results() if r.end_reason != "cancelled"]
    assert sorted(r.call_id for r in finished) == sorted(f"{p}#{n}" for p in BRISK for n in (1, 2, 3))
