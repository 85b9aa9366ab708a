"""A call the service placed is never lost or misreported: not when its store cannot be written
(a full disk: calls.jsonl pointed at /dev/full, which answers every write with ENOSPC; a runs
folder that cannot be made), not when the service is stopped (SIGTERM) or killed (kill -9) with
background calls accepted and callbacks owed. Real uvicorn servers, real `voicelab api`
processes, a real HTTP server receiving the callbacks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from voicelab.lab.store import RunStore

from ..conftest import ROOT
from .test_api import ANNA, Receiver, poll, serving, wait_done


def test_a_result_the_store_cannot_take_is_answered_kept_and_stored_once_it_can(tmp_path) -> None:
    receiver = Receiver()
    try:
        with serving(tmp_path, store_retry_s=0.2, callback_backoff_s=0.05) as url:
            first = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60).json()
            assert first["stored"] is True and first["store_error"] is None
            run = RunStore(tmp_path / "runs").open(first["run_id"])
            saved = run.calls_path.read_bytes()
            run.calls_path.unlink()
            run.calls_path.symlink_to("/dev/full")  # the disk is full from now on

            answer = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60)
            assert answer.status_code == 200, answer.text  # not 500: the call happened
            body = answer.json()
            assert body["status"] == "completed" and body["conversation_id"].startswith("conv_")
            assert body["transcript"] and body["success"] is True
            assert body["stored"] is False and "calls.jsonl" in body["store_error"]
            assert "No space left on device" in body["store_error"]

            health = httpx.get(f"{url}/health").json()
            assert health["status"] == "degraded" and health["store"]["writable"] is False
            assert health["store"]["unstored"] == 1 and "calls.jsonl" in health["store"]["error"]

            accepted = httpx.post(f"{url}/api/conversations", json={**ANNA, "callback_url": receiver.url})
            assert accepted.status_code == 202, accepted.text
            call_id = accepted.json()["id"]
            done = wait_done(url, call_id, until=lambda s: s.get("callback", {}).get("state") == "delivered")
            assert done["status"] == "completed" and done["conversation_id"].startswith("conv_")
            assert done["stored"] is False
            (sent,) = receiver.bodies
            assert sent["conversation_id"] == done["conversation_id"] and sent["stored"] is False

            run.calls_path.unlink()  # space again: what was kept is stored, once
            run.calls_path.write_bytes(saved)
            health = poll(f"{url}/health", lambda h: h["status"] == "ok", timeout_s=30)
            assert health["store"] == {"path": str(tmp_path / "runs"), "writable": True, "error": None,
                                       "unstored": 0}
            assert httpx.get(f"{url}/api/conversations/{call_id}").json()["stored"] is True
    finally:
        receiver.close()
    stored = [json.loads(line)["call_id"] for line in run.calls_path.read_text().splitlines()]
    assert sorted(stored) == sorted([first["call_id"], body["call_id"], call_id])


def test_a_store_that_cannot_be_written_refuses_calls_before_placing_them(tmp_path) -> None:
    (tmp_path / "runs").write_text("not a folder")  # no run can be made in it
    with serving(tmp_path) as url:
        for path, body in (("/api/conversation/start", ANNA), ("/api/conversations", ANNA)):
            answer = httpx.post(url + path, json=body, timeout=60)
            assert answer.status_code == 503, answer.text
            error = answer.json()
            assert error["error"] == "store_unavailable" and str(tmp_path / "runs") in error["detail"]
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "degraded" and health["store"]["writable"] is False
        assert str(tmp_path / "runs") in health["store"]["error"]
        started = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"]})
        assert started.status_code == 503 and started.json()["error"] == "store_unavailable"


def test_after_a_restart_the_calls_in_runs_are_found_by_call_or_conversation_id(tmp_path) -> None:
    with serving(tmp_path) as url:
        body = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60).json()
    with serving(tmp_path) as url:
        for key in (body["call_id"], body["conversation_id"]):
            found = httpx.get(f"{url}/api/conversations/{key}")
            assert found.status_code == 200, found.text
            state = found.json()
            assert state["state"] == "done" and state["call_id"] == body["call_id"]
            assert state["transcript"] == body["transcript"] and state["checks"] == body["checks"]
        assert httpx.get(f"{url}/api/conversations/call-000000000000").status_code == 404


# --------------------------------------------------------------------------- the service stopped


def start_service(root: Path, port: int, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicelab", "api", "--port", str(port), "--runs", str(root / "runs"),
         "--reports", str(root / "reports"), "--quiet"],
        cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc
        time.sleep(0.1)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two `voicelab api` processes each: 6 s on an idle box, 15 s on a busy one
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_restarted_service_answers_for_every_accepted_call_and_delivers_owed_callbacks(tmp_path, stop) -> None:
    """Two calls finish but their callbacks are refused (and the retry waits long); three are
    still being placed (a slow agent) and two wait for a slot, when the service stops. The next
    service answers all seven and delivers all seven callbacks."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    receiver = Receiver(fail_first=2)
    proc = start_service(tmp_path, port, VOICELAB_API_CALLBACK_BACKOFF_S="600", VOICELAB_API_MAX_CONCURRENT_CALLS="3")
    try:
        hook = {"callback_url": receiver.url}
        finished = [httpx.post(f"{url}/api/conversations", json={**ANNA, **hook}).json()["id"] for _ in range(2)]
        for call_id in finished:
            wait_done(url, call_id, until=lambda s: s.get("callback", {}).get("attempts") == 1)
        slow = {**ANNA, **hook, "persona_id": "silent-line-chargeback"}  # the agent re-prompts for 20 s
        others = [httpx.post(f"{url}/api/conversations", json=slow).json()["id"] for _ in range(5)]
        poll(f"{url}/health", lambda h: h["calls"]["in_flight"] == 3 and h["calls"]["waiting"] == 2)
    finally:
        proc.send_signal(stop)
        proc.communicate(timeout=60)
    assert len(receiver.bodies) == 2  # only the refused attempts so far
    proc = start_service(tmp_path, port)
    try:
        for call_id in finished:
            state = wait_done(url, call_id, until=lambda s: s.get("callback", {}).get("state") == "delivered")
            assert state["status"] == "completed" and state["transcript"] and state["stored"] is True
        for call_id in others:
            state = wait_done(url, call_id, until=lambda s: s.get("callback", {}).get("state") == "delivered")
            assert state["state"] == "interrupted" and state["status"] == "interrupted", state
            assert "not placed again" in state["error"]
        got = {b["id"]: b for b in receiver.bodies[2:]}
        assert set(got) == set(finished) | set(others) and len(receiver.bodies) == 9  # each once
        assert all(got[c]["status"] == "completed" for c in finished)
        assert all(got[c]["state"] == "interrupted" for c in others)
        (service_run,) = [r for r in httpx.get(f"{url}/api/runs").json() if r["run_id"].startswith("api-")][:1]
        status = httpx.get(f"{url}{service_run['link']}").json()
        # never "running" once its service is gone: closed by SIGTERM, repaired after kill -9
        assert status["state"] == ("finished" if stop == signal.SIGTERM else "interrupted")
        assert status["counts"]["done"] == 2  # the two that finished (the cancelled ones are not done)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        receiver.close()


def test_a_run_whose_placer_died_is_shown_repaired_and_cannot_be_cancelled(tmp_path) -> None:
    """kill -9 of whoever placed it leaves run.json saying running; the service shows what is
    true (interrupted, with the calls it stored) and says how to continue it."""
    with serving(tmp_path) as url:
        started = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"], "repeats": 2,
                                                      "run_id": "crashed"})
        assert started.status_code == 202
        poll(f"{url}/api/runs/crashed", lambda s: s["state"] == "finished")
    run = RunStore(tmp_path / "runs").open("crashed")
    m = run.manifest  # as a process killed in its second session would leave it
    m.state = m.sessions[-1].state = "running"
    m.sessions[-1].calls_stored, m.ended_at = 0, None
    run.save_manifest()
    with serving(tmp_path) as url:
        status = httpx.get(f"{url}/api/runs/crashed").json()
        assert status["state"] == "interrupted" and status["counts"]["done"] == 2
        refused = httpx.delete(f"{url}/api/runs/crashed")
        assert refused.status_code == 409 and "interrupted" in refused.json()["detail"]
        assert "voicelab run --resume crashed" in refused.json()["detail"]


def test_results_a_full_store_refused_are_stored_by_the_next_start(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOICELAB_UNSAVED_DIR", str(tmp_path / "unsaved"))
    with serving(tmp_path, store_retry_s=60) as url:
        first = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60).json()
        run = RunStore(tmp_path / "runs").open(first["run_id"])
        saved = run.calls_path.read_bytes()
        run.calls_path.unlink()
        run.calls_path.symlink_to("/dev/full")
        body = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60).json()
        assert body["stored"] is False and str(tmp_path / "unsaved") in body["store_error"]
    # stopped while the disk was still full: the result waits outside the store
    (kept,) = (tmp_path / "unsaved").iterdir()
    assert body["call_id"] in kept.read_text()
    run.calls_path.unlink()
    run.calls_path.write_bytes(saved)
    with serving(tmp_path) as url:
        found = httpx.get(f"{url}/api/conversations/{body['call_id']}").json()
        assert found["state"] == "done" and found["conversation_id"] == body["conversation_id"]
    stored = [json.loads(line)["call_id"] for line in run.calls_path.read_text().splitlines()]
    assert stored == [first["call_id"], body["call_id"]] and not kept.exists()
