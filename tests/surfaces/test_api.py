"""The REST service, through a real uvicorn server and a real HTTP client (httpx): the original
conversation contract, its validation, background calls with a callback received by a real HTTP
server, runs over HTTP, the key, and 100 calls at once.

Most tests run the app in a uvicorn server on a thread of the test process (so settings can be
given directly); `test_the_command_*` start `voicelab api` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn

from voicelab.lab.store import RunStore
from voicelab.surfaces.api import ServiceSettings, create_app

from ..conftest import ROOT

ANNA = {"user_info": {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567"},
        "chargeback_info": {"product_name": "Premium Gym Membership", "reason": "duplicate charge"}}


@contextlib.contextmanager
def serving(root: Path, host: str = "127.0.0.1", **settings) -> Iterator[str]:
    """The service under uvicorn on a free port, stopped (gracefully) afterwards."""
    config = ServiceSettings(runs_root=str(root / "runs"), reports_dir=str(root / "reports"), **settings)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host=host, port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """One service for the tests that only read what they place: (its URL, its folder)."""
    root = tmp_path_factory.mktemp("api")
    with serving(root, callback_backoff_s=0.05, max_body_bytes=4096) as url:
        yield url, root


def with_(body: dict, path: str, value) -> dict:  # noqa: ANN001
    """`body` with the field at dotted `path` set to `value` (or removed, for ...)."""
    out = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node = out
    for name in parents:
        node = node[name]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


# --------------------------------------------------------------------------- the original contract


def test_start_answers_the_original_contract_field_by_field(api) -> None:
    url, root = api
    answer = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert list(body)[:4] == ["conversation_id", "transcript", "status", "duration_seconds"]
    assert isinstance(body["conversation_id"], str) and body["conversation_id"].startswith("conv_")
    assert body["status"] == "completed" and body["end_reason"] == "agent_ended" and body["error"] is None
    assert isinstance(body["duration_seconds"], float) and body["duration_seconds"] >= 0
    turns = body["transcript"]
    assert all(set(t) == {"speaker", "text", "timestamp"} for t in turns)
    assert [t["speaker"] for t in turns[:2]] == ["agent", "user"]
    assert all(isinstance(t["timestamp"], float) for t in turns)
    assert [t["timestamp"] for t in turns] == sorted(t["timestamp"] for t in turns)
    said = " ".join(t["text"] for t in turns if t["speaker"] == "agent")
    # the dynamic variables reached the agent: name, product, reason in what it said ...
    assert "Anna Kowalska" in turns[0]["text"]
    assert "Premium Gym Membership" in said and "duplicate charge" in said
    assert body["success"] is True
    # ... and the phone number in its lookup; the call is in the service's run, as any call is
    stored = {r.call_id: r for r in RunStore(root / "runs").open(body["run_id"]).results()}
    result = stored[body["call_id"]]
    assert result.conversation_id == body["conversation_id"]
    assert result.tool_calls[0].tool == "lookup_dispute"
    assert result.tool_calls[0].args == {"phone_number": "+48601234567"}
    assert RunStore(root / "runs").open(body["run_id"]).manifest.kind == "service"


def test_each_request_changes_what_the_agent_says(api) -> None:
    url, _ = api
    other = with_(with_(ANNA, "user_info.first_name", "Ewa"), "chargeback_info.product_name", "Yoga Pass")
    body = httpx.post(f"{url}/api/conversation/start", json=other, timeout=60).json()
    said = " ".join(t["text"] for t in body["transcript"] if t["speaker"] == "agent")
    assert "Ewa Kowalska" in said and "Yoga Pass" in said and "Premium Gym" not in said


E164 = "must be an E.164 phone number"


@pytest.mark.parametrize(("body", "field", "message"), [
    (with_(ANNA, "user_info", ...), "user_info", "is required"),
    (with_(ANNA, "chargeback_info", ...), "chargeback_info", "is required"),
    (with_(ANNA, "user_info.first_name", ...), "user_info.first_name", "is required"),
    (with_(ANNA, "user_info.first_name", "   "), "user_info.first_name", "may not be empty"),
    (with_(ANNA, "user_info.last_name", ""), "user_info.last_name", "may not be empty"),
    (with_(ANNA, "chargeback_info.product_name", ""), "chargeback_info.product_name", "may not be empty"),
    (with_(ANNA, "chargeback_info.reason", ...), "chargeback_info.reason", "is required"),
    (with_(ANNA, "user_info.phone_number", "0048601234567"), "user_info.phone_number", E164),
    (with_(ANNA, "user_info.phone_number", "+48 601 234 567"), "user_info.phone_number", E164),
    (with_(ANNA, "user_info.phone_number", "+0601234567"), "user_info.phone_number", E164),
    (with_(ANNA, "user_info.phone_number", "+4860123456789012"), "user_info.phone_number", E164),
    (with_(ANNA, "user_info.phone_number", 48601234567), "user_info.phone_number", "valid string"),
    (with_(ANNA, "user_info.first_name", "A" * 201), "user_info.first_name", "at most 200"),
    ([ANNA], "body", "must be a JSON object"),
])
def test_every_invalid_field_is_named(api, body, field, message) -> None:
    url, _ = api
    answer = httpx.post(f"{url}/api/conversation/start", json=body, timeout=30)
    assert answer.status_code == 422
    error = answer.json()
    assert error["status"] == 422 and error["error"] == "invalid_request"
    assert [f["field"] for f in error["fields"]] == [field]
    assert message in error["fields"][0]["message"] and error["detail"].startswith(f"{field}: ")


def test_bodies_that_are_not_json_are_refused_in_the_same_shape(api) -> None:
    url, _ = api
    broken = httpx.post(f"{url}/api/conversation/start", content=b'{"user_info": ',
                        headers={"Content-Type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"].startswith("body: is not valid JSON")
    untyped = httpx.post(f"{url}/api/conversation/start", content=json.dumps(ANNA).encode())
    assert untyped.status_code == 422 and "Content-Type: application/json" in untyped.json()["detail"]
    huge = httpx.post(f"{url}/api/conversation/start", json={**ANNA, "padding": "x" * 5000})
    assert huge.status_code == 413 and huge.json()["error"] == "too_large" and "4096 bytes" in huge.json()["detail"]
    chunked = httpx.post(f"{url}/api/conversation/start", content=iter([b"{" + b" " * 3000, b" " * 3000 + b"}"]),
                         headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    nowhere = httpx.get(f"{url}/api/nowhere")
    assert nowhere.status_code == 404 and "/docs" in nowhere.json()["detail"]
    assert set(nowhere.json()) == {"status", "error", "detail", "fields"}


def test_a_call_past_the_limit_is_failed_with_timeout_and_its_partial_transcript(tmp_path) -> None:
    with serving(tmp_path, max_call_s=1.0, latency_ms=700) as url:
        body = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60).json()
    assert body["status"] == "failed" and body["end_reason"] == "timeout" and body["success"] is False
    assert "limit of 1 s" in body["error"]
    assert body["transcript"] and body["transcript"][0]["speaker"] == "agent"  # what was said before the limit
    assert body["duration_seconds"] == pytest.approx(1.0, abs=0.5)


def test_missing_settings_answer_503_naming_what_to_set(tmp_path, monkeypatch) -> None:
    with serving(tmp_path, backend="elevenlabs") as url:
        def start() -> dict:
            answer = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=30)
            assert answer.status_code == 503 and answer.json()["error"] == "not_configured"
            return answer.json()

        assert "ELEVENLABS_PHONE_NUMBER_ID is not set" in start()["detail"]
        monkeypatch.setenv("ELEVENLABS_PHONE_NUMBER_ID", "phnum_test")
        assert "ELEVENLABS_API_KEY is not set" in start()["detail"]
        monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_test_never_shown")
        detail = start()["detail"]
        assert "ELEVENLABS_AGENT_ID" in detail and "sk_test_never_shown" not in detail
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing was placed


def test_on_the_hosted_path_the_platform_dials_the_number(tmp_path, local_backend, monkeypatch) -> None:
    """--backend elevenlabs places an outbound phone call (the phone runner); the local backend
    stands in for the platform, and its persona with that number picks up."""
    platform = local_backend()
    for name, value in {"ELEVENLABS_BASE_URL": platform.base_url, "ELEVENLABS_API_KEY": "sk_test_hosted",
                        "ELEVENLABS_AGENT_ID": "chargeback", "ELEVENLABS_PHONE_NUMBER_ID": "phnum_test"}.items():
        monkeypatch.setenv(name, value)
    with serving(tmp_path, backend="elevenlabs") as url:
        body = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=120).json()
        nobody = with_(ANNA, "user_info.phone_number", "+15550001111")
        unanswered = httpx.post(f"{url}/api/conversation/start", json=nobody, timeout=120).json()
    assert unanswered["status"] == "failed" and unanswered["end_reason"] == "error"
    assert "not answered" in unanswered["error"] and unanswered["conversation_id"].startswith("conv_")
    assert body["status"] == "completed", body
    record = platform.history.get(body["conversation_id"])
    assert record.phone_call["external_number"] == "+48601234567"
    assert record.dynamic_variables["chargeback_reason"] == "duplicate charge"
    assert "Premium Gym Membership" in " ".join(t["text"] for t in body["transcript"])


# --------------------------------------------------------------------------- background calls


class Receiver:
    """A real HTTP server that takes callbacks: answers `fail_first` of them 500, then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.fail_first = fail_first
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                data = self.rfile.read(int(self.headers["Content-Length"]))
                received.bodies.append(json.loads(data))
                self.send_response(500 if len(received.bodies) <= received.fail_first else 204)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/call-ended?ticket=42"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def poll(url: str, until, timeout_s: float = 120) -> dict:  # noqa: ANN001
    """GET `url` until `until(body)` holds; the last body when it does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = httpx.get(url).json()
        if until(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{url} never got there: {body}")


def wait_done(url: str, call_id: str, until=lambda s: s["state"] == "done") -> dict:  # noqa: ANN001
    return poll(f"{url}/api/conversations/{call_id}", until)


def test_a_background_call_is_followed_and_its_callback_delivered_after_a_retry(api) -> None:
    url, _ = api
    receiver = Receiver(fail_first=1)
    try:
        accepted = httpx.post(f"{url}/api/conversations", json={**ANNA, "callback_url": receiver.url})
        assert accepted.status_code == 202
        call_id = accepted.json()["id"]
        assert accepted.headers["Location"] == f"/api/conversations/{call_id}" == accepted.json()["location"]
        state = wait_done(url, call_id, until=lambda s: s.get("callback", {}).get("state") == "delivered")
    finally:
        receiver.close()
    assert state["status"] == "completed" and state["call_id"] == call_id
    assert state["callback"] == {"url": receiver.url, "state": "delivered", "attempts": 2, "last_status": 204,
                                 "error": None}
    assert len(receiver.bodies) == 2 and receiver.bodies[0] == receiver.bodies[1]
    sent = receiver.bodies[-1]
    same = ("conversation_id", "transcript", "status", "duration_seconds", "end_reason", "success", "checks",
            "tool_calls")
    assert {k: sent[k] for k in same} == {k: state[k] for k in same}
    assert sent["checks"] and sent["tool_calls"][0]["tool"] == "lookup_dispute"  # the verdict travels with it


def test_a_callback_that_never_answers_is_retried_and_the_failure_is_visible(api) -> None:
    url, _ = api
    receiver = Receiver()
    dead = receiver.url
    receiver.close()
    receiver.server.server_close()  # nothing listens there any more
    call_id = httpx.post(f"{url}/api/conversations", json={**ANNA, "callback_url": dead}).json()["id"]
    state = wait_done(url, call_id, until=lambda s: s.get("callback", {}).get("state") == "failed")
    assert state["status"] == "completed"  # the call itself is fine
    assert state["callback"]["attempts"] == 3 and "could not be reached" in state["callback"]["error"]


def test_a_call_in_flight_when_the_service_stops_is_stored_as_cancelled(tmp_path) -> None:
    with serving(tmp_path, latency_ms=2000) as url:
        call_id = httpx.post(f"{url}/api/conversations", json=ANNA).json()["id"]
        running = wait_done(url, call_id, until=lambda s: s["state"] == "running")
        assert running["status"] is None
        time.sleep(0.5)  # connected, waiting for the agent's slow answer
    store = RunStore(tmp_path / "runs")
    (run,) = [store.open(run_id) for run_id in store.list()]  # runs/_api is the service's journal, not a run
    (result,) = run.results()
    assert result.call_id == call_id and result.end_reason == "cancelled" and result.status == "failed"
    assert result.transcript == [] or result.transcript[0].speaker == "agent"
    assert run.manifest.state == "finished"


def test_a_background_call_can_use_a_persona_and_names_unknown_ones(api) -> None:
    url, _ = api
    call_id = httpx.post(f"{url}/api/conversations",
                         json={**ANNA, "persona_id": "marek-already-closed"}).json()["id"]
    state = wait_done(url, call_id)
    assert "already closed" in " ".join(t["text"] for t in state["transcript"])  # marek's world, anna's name
    assert "Anna" in state["transcript"][0]["text"]
    for field, value in (("persona_id", "nobody"), ("agent_id", "no-such-agent"), ("callback_url", "ftp://x")):
        answer = httpx.post(f"{url}/api/conversations", json={**ANNA, field: value})
        assert answer.status_code == 422 and answer.json()["fields"][0]["field"] == field, answer.text
    missing = httpx.get(f"{url}/api/conversations/call-000000000000")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# --------------------------------------------------------------------------- runs


def wait_run(url: str, run_id: str, until) -> dict:  # noqa: ANN001
    return poll(f"{url}/api/runs/{run_id}", until)


def test_a_run_is_started_watched_reported_and_its_calls_read_over_http(api) -> None:
    url, root = api
    started = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge", "sven-wrong-person"],
                                                  "repeats": 2, "run_id": "over-http"}, timeout=60)
    assert started.status_code == 202, started.text
    assert started.headers["Location"] == "/api/runs/over-http"
    assert started.json()["counts"]["planned"] == 4
    status = wait_run(url, "over-http", lambda s: s["state"] == "finished")
    assert status["counts"] == {"planned": 4, "done": 4, "passed": 4, "failed": 0, "running": 0}
    assert status["gate"] == {"passed": True, "reasons": [], "fail_under": None}
    assert status["summary"]["calls"] == 4 and status["summary"]["success_rate"] == 1.0
    lines = httpx.get(f"{url}/api/runs/over-http/calls").text.splitlines()
    assert sorted(json.loads(line)["call_id"] for line in lines) == [
        "anna-double-charge#1", "anna-double-charge#2", "sven-wrong-person#1", "sven-wrong-person#2"]
    report = httpx.get(f"{url}/api/runs/over-http/report", timeout=180)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "sven-wrong-person" in report.text and (root / "reports" / "over-http.html").is_file()
    taken = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"], "run_id": "over-http"})
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]


def test_a_run_is_cancelled_over_http_as_ctrl_c_would(api) -> None:
    url, root = api
    started = httpx.post(f"{url}/api/runs", json={"personas": ["silent-line-chargeback", "anna-double-charge"],
                                                  "repeats": 3, "concurrency": 2, "run_id": "to-cancel"})
    assert started.status_code == 202
    wait_run(url, "to-cancel", lambda s: s["counts"]["done"] >= 1 and s["counts"]["running"] >= 1)
    stopped = httpx.delete(f"{url}/api/runs/to-cancel", timeout=90)
    assert stopped.status_code == 200
    status = stopped.json()
    assert status["state"] == "interrupted" and status["stopped_by"] == "cancel"
    results = RunStore(root / "runs").open("to-cancel").results()
    cancelled = [r for r in results if r.end_reason == "cancelled"]
    assert cancelled and all(r.persona_id == "silent-line-chargeback" for r in cancelled)  # the ones in flight
    assert status["counts"]["done"] == len(results) - len(cancelled) < 6  # resumable: the rest is still to do
    again = httpx.delete(f"{url}/api/runs/to-cancel")
    assert again.status_code == 409 and "not being placed" in again.json()["detail"]


@pytest.mark.parametrize(("body", "field"), [
    ({"personas": ["nobody"]}, "personas"),
    ({"repeat": 2}, "repeat"),
    ({"repeats": 0}, "repeats"),
    ({"mode": "video"}, "mode"),
    ({"experiment": "/etc/passwd"}, None),
    ({"experiment": "../outside.yaml"}, None),
    ({"experiment": "experiments/chargeback-reason.yaml", "personas": ["anna-double-charge"]}, "personas"),
    ({"experiment": "experiments/chargeback-reason.yaml", "caller": "agent"}, "caller"),
])
def test_bad_run_options_are_named_and_nothing_is_started(api, body, field) -> None:
    url, root = api
    before = sorted(p.name for p in (root / "runs").iterdir()) if (root / "runs").exists() else []
    answer = httpx.post(f"{url}/api/runs", json=body)
    assert answer.status_code == 422, answer.text
    if field:
        assert answer.json()["detail"].startswith(f"{field}: ")
    after = sorted(p.name for p in (root / "runs").iterdir()) if (root / "runs").exists() else []
    assert after == before
    assert httpx.get(f"{url}/api/runs/nope").status_code == 404


def test_an_experiment_runs_over_http(api, artifacts) -> None:
    """The bundled chargeback-reason experiment, cut to anna (whose checks listen for the reason)."""
    url, _ = api
    bundled = (ROOT / "experiments" / "chargeback-reason.yaml").read_text().replace(
        "agent: chargeback ", "personas: [anna-double-charge] ").replace(
        "agents/chargeback-forgets-reason.yaml", str(ROOT / "experiments/agents/chargeback-forgets-reason.yaml"))
    assert "personas: [anna-double-charge]" in bundled
    (artifacts / "reason-anna.yaml").write_text(bundled)
    started = httpx.post(f"{url}/api/runs", json={"experiment": str((artifacts / "reason-anna.yaml").relative_to(
        ROOT)), "repeats": 2, "run_id": "reason-anna"}, timeout=60)  # a run id, as `voicelab experiment --run-id`
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert run_id == "reason-anna" and started.headers["Location"] == "/api/runs/reason-anna"
    status = wait_run(url, run_id, lambda s: s["state"] == "finished")
    assert status["kind"] == "experiment" and status["counts"]["planned"] == status["counts"]["done"] == 4
    assert status["counts"]["passed"] == 2  # anna passes as written and fails without the reason ...
    assert status["gate"]["passed"] is False  # ... so the broken variant fails anna's gate, as on the CLI


# --------------------------------------------------------------------------- schema, key, load


def test_the_openapi_schema_has_the_original_models_with_examples(api) -> None:
    url, _ = api
    schema = httpx.get(f"{url}/openapi.json").json()
    models = schema["components"]["schemas"]
    assert {"ConversationStartRequest", "UserInfo", "ChargebackInfo", "ConversationResponse", "TranscriptTurn",
            "ErrorBody"} <= set(models)
    assert set(models["UserInfo"]["required"]) == {"first_name", "last_name", "phone_number"}
    assert set(models["ChargebackInfo"]["required"]) == {"product_name", "reason"}
    assert models["ConversationStartRequest"]["examples"][0] == ANNA
    assert list(models["ConversationResponse"]["properties"])[:4] == [
        "conversation_id", "transcript", "status", "duration_seconds"]
    start = schema["paths"]["/api/conversation/start"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ConversationStartRequest")
    assert {"200", "422", "503"} <= set(start["responses"])
    assert {"/api/conversations", "/api/conversations/{call_id}", "/api/runs", "/api/runs/{run_id}",
            "/api/runs/{run_id}/report", "/api/runs/{run_id}/calls"} <= set(schema["paths"])
    docs = httpx.get(f"{url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_a_key_is_required_when_set_and_never_shown(tmp_path) -> None:
    key = "vk_test_0123456789abcdef"
    with serving(tmp_path, api_key=key) as url:
        assert httpx.get(f"{url}/health").status_code == 200  # no key needed to see it is up
        bare = httpx.post(f"{url}/api/conversation/start", json=ANNA)
        assert bare.status_code == 401 and bare.headers["WWW-Authenticate"] == "Bearer"
        wrong = httpx.post(f"{url}/api/conversation/start", json=ANNA, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        assert httpx.get(f"{url}/api/runs", headers={"Authorization": f"Basic {key}"}).status_code == 401
        good = httpx.post(f"{url}/api/conversation/start", json=ANNA, headers={"Authorization": f"Bearer {key}"},
                          timeout=60)
        assert good.status_code == 200
        assert key not in bare.text + wrong.text + good.text


def non_loopback_address() -> str | None:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_reached_beyond_loopback_without_a_key_it_answers_only_403(tmp_path) -> None:
    """`uvicorn voicelab.surfaces.api:app --host 0.0.0.0` without VOICELAB_API_KEY: loopback works, any other
    address of the machine is refused (the CLI refuses to start at all)."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with serving(tmp_path, host="0.0.0.0") as url:
        port = url.rsplit(":", 1)[1]
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        outside = httpx.post(f"http://{address}:{port}/api/conversation/start", json=ANNA, trust_env=False)
        assert outside.status_code == 403 and "VOICELAB_API_KEY" in outside.json()["detail"]
        assert not (tmp_path / "runs").exists()


def test_100_concurrent_calls_are_all_answered_and_stored_once(tmp_path) -> None:
    async def place_all(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
            bodies = [with_(ANNA, "user_info.first_name", f"Caller{i}") for i in range(100)]
            return await asyncio.gather(*(client.post("/api/conversation/start", json=b) for b in bodies))

    with serving(tmp_path) as url:
        answers = asyncio.run(place_all(url))
    assert [a.status_code for a in answers] == [200] * 100
    bodies = [a.json() for a in answers]
    assert all(b["status"] == "completed" and b["success"] for b in bodies)
    for i, body in enumerate(bodies):  # every answer is its own request's call
        assert f"Caller{i} Kowalska" in body["transcript"][0]["text"]
    assert len({b["conversation_id"] for b in bodies}) == 100 and len({b["call_id"] for b in bodies}) == 100
    run = RunStore(tmp_path / "runs").open(bodies[0]["run_id"])
    lines = run.calls_path.read_text().splitlines()
    assert len(lines) == 100  # none lost, none written twice
    assert sorted(json.loads(line)["call_id"] for line in lines) == sorted(b["call_id"] for b in bodies)


# --------------------------------------------------------------------------- the command


def voicelab(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "voicelab", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})


def test_the_command_refuses_other_interfaces_without_a_key() -> None:
    proc = voicelab("api", "--host", "0.0.0.0", "--port", "8999")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "VOICELAB_API_KEY" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_command_serves_until_sigterm_and_keeps_secrets_out_of_everything(tmp_path) -> None:
    secrets = {"VOICELAB_API_KEY": "vk_sentinel_5b7e1c", "ELEVENLABS_API_KEY": "sk_sentinel_9f2d4a"}
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = voicelab("api", "--port", str(port), "--runs", str(tmp_path / "runs"), "--reports",
                    str(tmp_path / "reports"), env=secrets)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {secrets['VOICELAB_API_KEY']}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            time.sleep(0.2)
        seen = [httpx.post(f"{url}/api/conversation/start", json=ANNA, headers=auth, timeout=60).text,
                httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60).text,
                httpx.get(f"{url}/openapi.json").text]
        run_id = json.loads(seen[0])["run_id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert f"voicelab API at {url}" in out and f"docs: {url}/docs" in out
    assert proc.returncode == 143 and "Traceback" not in err
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert json.loads(RunStore(tmp_path / "runs").open(run_id).path.joinpath("run.json").read_text())[
        "state"] == "finished"
    for value in secrets.values():
        assert value not in out + err + stored + "".join(seen)
