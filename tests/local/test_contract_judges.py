"""The judges themselves (tests/contracts.py): the vendored contracts reject what the platform's
contract forbids, so a backend that drifts fails the tests that record its frames and bodies."""

from __future__ import annotations

import json
import urllib.request

import pytest

from voicelab.local import frames

from ..contracts import Recorder, client_kind, first_error, rest_validators, websocket_validators
from ..wire import is_agent, open_conversation, read_until

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=10) as response:
        return json.load(response)


def test_the_websocket_contract_rejects_frames_it_does_not_allow():
    client, server = websocket_validators()
    assert first_error(server["vad_score"], frames.vad_score(score=0.5)) is None
    assert first_error(server["vad_score"], frames.vad_score(score=1.5)) is not None  # a probability
    tentative = frames.tentative_user_transcript(text="yes", event_id=3)
    assert first_error(server["tentative_user_transcript"], tentative) is None
    ping = frames.ping(event_id=1, ping_ms=None)  # nullable in the contract
    assert first_error(server["ping"], ping) is None
    init = {"type": "conversation_initiation_client_data",
            "conversation_config_override": {"conversation": {"client_events": ["error"]}}}
    assert "client_events" in (first_error(client["conversation_initiation_client_data"], init) or "")


def test_the_openapi_document_rejects_what_issue_28_found(backend):
    """GET agent with `error` among its client_events, GET conversation without `metadata.cost_fiat`."""
    with open_conversation(backend.base_url) as ws:
        read_until(ws, is_agent)
    agent = get(backend.base_url, "/v1/convai/agents/chargeback")
    check = rest_validators()["GET /v1/convai/agents/{}"]
    assert first_error(check, agent) is None
    agent["conversation_config"]["conversation"]["client_events"].append("error")
    assert "client_events" in (first_error(check, agent) or "")
    page = get(backend.base_url, "/v1/convai/conversations?agent_id=chargeback&page_size=1")
    conversation_id = page["conversations"][0]["conversation_id"]
    body = get(backend.base_url, f"/v1/convai/conversations/{conversation_id}")
    check = rest_validators()["GET /v1/convai/conversations/{}"]
    assert first_error(check, body) is None
    del body["metadata"]["cost_fiat"]
    assert "cost_fiat" in (first_error(check, body) or "")


def test_the_recorder_judges_official_clients_and_the_backend_but_not_raw_clients():
    recorder = Recorder()
    bad = json.dumps({"type": "user_message", "text": 42})
    recorder.frame("client", "raw", bad)
    assert not recorder.failures  # malformed on purpose
    recorder.frame("client", "python-sdk", bad)
    recorder.frame("server", "raw", json.dumps({"type": "ping", "ping_event": {}}))
    assert [f["what"] for f in recorder.failures] == ["client → server user_message (python-sdk)",
                                                      "server → client ping (raw)"]
    recorder.frame("client", "python-sdk", json.dumps({"type": "client_tool_result", "tool_call_id": "t",
                                                       "result": {"status": "open"}, "is_error": False}))
    assert len(recorder.failures) == 2  # a known deviation of the Python SDK, counted apart
    assert recorder.ws["client → server client_tool_result"]["python-sdk:deviation"] == 1


def test_clients_are_told_apart_by_their_handshake():
    assert client_kind({"User-Agent": "Python/3.11 websockets/15.0.1"}) == "python-sdk"
    assert client_kind({"Sec-WebSocket-Protocol": "convai"}) == "js-client"
    assert client_kind({"User-Agent": "voicelab-tests-raw"}) == "raw"
    assert client_kind({}) == "raw"
