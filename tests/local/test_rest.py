"""The local backend's REST side as the platform answers it, through the unchanged Python SDK
(and raw HTTP where the SDK would hide the shape): JSON errors, 4xx for bad bodies, audio, list
filters and paging, agents list, feedback, deletion, system variables, and a GET agent that the
websocket never contradicts."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.core.api_error import ApiError
from websockets.exceptions import ConnectionClosed

from voicelab.harness.call import Call
from voicelab.local import LocalBackend

from ..wire import ANNA, init, is_agent, open_conversation, read_until

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def http(base_url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, str, object]:
    request = urllib.request.Request(base_url + path, data=body, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, ctype, raw = response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as exc:
        status, ctype, raw = exc.code, exc.headers.get("content-type", ""), exc.read()
    return status, ctype, json.loads(raw) if "json" in ctype else raw


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/v1/nothing/here", None, 404),
    ("DELETE", "/v1/convai/agents/chargeback", None, 405),
    ("GET", "/v1/convai/conversation?agent_id=chargeback", None, 400),  # plain HTTP on the websocket route
    ("POST", "/v1/convai/agents/chargeback/run-tests", b"not json", 422),
    ("POST", "/v1/convai/agents/chargeback/run-tests", b"[1, 2]", 422),
    ("POST", "/v1/convai/agents/chargeback/run-tests", b'{"tests": "all"}', 422),
    ("POST", "/v1/convai/agents/chargeback/run-tests", b'{"tests": [{"test_id": 5}]}', 422),
    ("POST", "/v1/convai/agents/chargeback/run-tests", b'{"tests": [{"test_id": "x"}], "repeat_count": "2"}', 422),
    ("POST", "/v1/convai/agent-testing/create", b"{", 422),
    ("POST", "/v1/convai/agent-testing/create", b'{"name": 5, "type": "simulation"}', 422),
    ("POST", "/v1/convai/agent-testing/create", b'{"name": "t", "type": "simulation", "simulation_scenario": "s", '
                                                b'"success_conditions": "all"}', 422),
    ("POST", "/v1/convai/twilio/outbound-call", b"null", 422),
    ("POST", "/v1/convai/twilio/outbound-call", b'{"agent_id": ["chargeback"]}', 422),
    ("POST", "/v1/convai/twilio/outbound-call", b'{"agent_id": "chargeback", "agent_phone_number_id": "p", '
                                                b'"to_number": "+15550001111", "conversation_initiation_client_data": '
                                                b'{"dynamic_variables": {"system__caller_id": "+1"}}}', 422),
    ("POST", "/v1/convai/sip-trunk/outbound-call", b'{"agent_id": "chargeback", "to_number": 5}', 422),
    ("POST", "/v1/convai/agents/chargeback/simulate-conversation", b'{"simulation_specification": []}', 422),
    ("GET", "/v1/convai/conversations?page_size=0", None, 422),
    ("GET", "/v1/convai/conversations?call_successful=maybe", None, 422),
    ("GET", "/v1/convai/conversations?cursor=garbage", None, 422),
    ("GET", "/v1/convai/conversations?call_start_after_unix=yesterday", None, 422),
    ("GET", "/v1/convai/conversations/conv_nope", None, 404),
    ("GET", "/v1/convai/conversations/conv_nope/audio", None, 404),
    ("POST", "/v1/convai/conversations/conv_nope/feedback", b'{"feedback": "like"}', 404),
    ("GET", "/v1/convai/agents?page_size=1000", None, 422),
])
def test_errors_are_json_details_never_500(backend, method, path, body, status):
    got, ctype, payload = http(backend.base_url, method, path, body)
    assert got == status and ctype.startswith("application/json"), (got, ctype, payload)
    assert isinstance(payload, dict) and "detail" in payload


def finished(backend: LocalBackend, conversation_id: str) -> dict:
    deadline = time.time() + 10
    while time.time() < deadline:
        record = backend.history.get(conversation_id)
        if record is not None and record.ended is not None:
            return record.to_response()
        time.sleep(0.05)
    raise TimeoutError(conversation_id)


def test_list_filters_and_paging(local_backend, dataset):
    server = local_backend()
    ids = {}
    for persona in ("anna-double-charge", "kevin-in-a-hurry", "tomasz-merchant-refunded", "silent-line-chargeback"):
        request = dataset.request(persona, max_duration_s=8)
        ids[persona] = Call(request, base_url=server.base_url).run().conversation_id
    api = ElevenLabs(base_url=server.base_url, api_key="x").conversational_ai.conversations
    everything = api.list(page_size=100).conversations
    assert {c.conversation_id for c in everything} == set(ids.values())
    for verdict in ("success", "failure", "unknown"):
        listed = api.list(call_successful=verdict).conversations
        assert all(c.call_successful == verdict for c in listed)
    assert sum(len(api.list(call_successful=v).conversations) for v in ("success", "failure", "unknown")) == 4
    assert api.list(agent_id="applicant-screening").conversations == []
    seen, cursor = [], None
    while True:  # pages of one, newest first, nothing twice
        page = api.list(page_size=1, cursor=cursor)
        seen += [c.conversation_id for c in page.conversations]
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert len(seen) == 4 and len(set(seen)) == 4
    starts = [c.start_time_unix_secs for c in everything]
    assert starts == sorted(starts, reverse=True)
    future = int(time.time()) + 3600
    assert api.list(call_start_after_unix=future).conversations == []
    assert len(api.list(call_start_before_unix=future).conversations) == 4


def test_agents_list_feedback_deletion_and_system_variables(backend, dataset):
    client = ElevenLabs(base_url=backend.base_url, api_key="x")
    agents = client.conversational_ai.agents.list()
    # the served agents, and the caller agent that plays personas for `caller: agent` calls
    assert {a.agent_id for a in agents.agents} == {*dataset.agents, "voicelab-caller"} and not agents.has_more
    conversation_id = Call(dataset.request("anna-double-charge"), base_url=backend.base_url).run().conversation_id
    api = client.conversational_ai.conversations
    api.feedback.create(conversation_id, feedback="dislike")
    stored = api.get(conversation_id)
    assert stored.metadata.feedback.overall_score == "dislike" and stored.metadata.feedback.dislikes == 1
    variables = stored.conversation_initiation_client_data.dynamic_variables
    assert variables["system__conversation_id"] == conversation_id
    assert variables["system__agent_id"] == "chargeback" and variables["system__time_utc"].endswith("+00:00")
    api.delete(conversation_id)
    with pytest.raises(ApiError) as err:
        api.get(conversation_id)
    assert err.value.status_code == 404


def test_audio_for_voice_and_phone_calls_404_for_text(local_backend, dataset, monkeypatch):
    server = local_backend()
    client = ElevenLabs(base_url=server.base_url, api_key="x")
    text = Call(dataset.request("anna-double-charge"), base_url=server.base_url).run()
    with pytest.raises(ApiError) as err:
        b"".join(client.conversational_ai.conversations.audio.get(text.conversation_id))
    assert err.value.status_code == 404 and not client.conversational_ai.conversations.get(
        text.conversation_id).has_audio
    call = client.conversational_ai.twilio.outbound_call(agent_id="chargeback", agent_phone_number_id="phnum_1",
                                                         to_number="+48601234567")
    record = finished(server, call.conversation_id)
    assert record["has_audio"] and record["conversation_initiation_client_data"]["dynamic_variables"][
        "system__call_sid"] == call.call_sid
    wav = b"".join(client.conversational_ai.conversations.audio.get(call.conversation_id))
    assert wav[:4] == b"RIFF" and wav[22] == 2 and len(wav) > 16000 * 4 * 5  # stereo, seconds of speech


def locked_agent(dataset, **platform):
    agent = dataset.agents["chargeback"]
    return agent.model_copy(update={"platform": agent.platform.model_copy(update=platform)})


def test_get_agent_tells_what_the_websocket_enforces(local_backend, dataset):
    agent = locked_agent(dataset, allowed_overrides=["language", "text_only"],
                         placeholders={"chargeback_reason": "unknown"}, max_duration_s=2)
    server = local_backend(agents={"chargeback": agent})
    got = ElevenLabs(base_url=server.base_url, api_key="x").conversational_ai.agents.get("chargeback")
    allowed = got.platform_settings.overrides.conversation_config_override
    assert allowed.agent.first_message is False and allowed.agent.language is True
    assert allowed.agent.prompt.prompt is False and allowed.agent.prompt.llm is False
    config = got.conversation_config
    assert config.conversation.max_duration_seconds == 2
    assert "agent_tool_response" in config.conversation.client_events
    assert config.turn.turn_timeout == dataset.agents["chargeback"].flow.silence.after_s
    variables = config.agent.dynamic_variables  # the SDK leaves this one a dict
    assert dict(variables)["dynamic_variable_placeholders"] == {"chargeback_reason": "unknown"}

    # what GET refuses, the websocket refuses, in the platform's words
    ws = open_conversation(server.base_url, first=init(conversation_config_override={
        "text_only": True, "agent": {"first_message": "Hi"}}))
    with pytest.raises(ConnectionClosed):
        read_until(ws, is_agent)
    assert ws.close_code == 1008 and ws.close_reason == "Override for field 'first_message' is not allowed by config."
    # a placeholder fills a variable the client left out; max_duration_seconds ends the call
    without = {k: v for k, v in ANNA.items() if k != "chargeback_reason"}
    ws = open_conversation(server.base_url, first=init(dynamic_variables=without))
    read_until(ws, is_agent)
    started = time.time()
    with pytest.raises(ConnectionClosed):
        read_until(ws, lambda f: False, timeout=10)
    assert ws.close_code == 1000 and ws.close_reason == "Maximum duration exceeded" and time.time() - started < 5
    ws = open_conversation(server.base_url, first=init(conversation_config_override={
        "text_only": True, "agent": {"language": "xx"}}))
    with pytest.raises(ConnectionClosed):
        read_until(ws, is_agent)
    assert ws.close_code == 1008 and "Unsupported language" in ws.close_reason
