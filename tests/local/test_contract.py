"""The local backend where it used to differ from the platform's published contract
(elevenlabs/packages, packages/types/schemas/agent.asyncapi.yaml): an optional `user_message`
text, an empty first-message override, the error event before a missing-variable refusal, the
client's `conversation.client_events`, and an `error` event (not silence, not a close) for the
client messages the backend cannot act on. Driven by the unchanged Python SDK, or a raw
websocket where the SDK cannot send the frame or does not show what came back."""

from __future__ import annotations

import json
import threading
import time

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai.conversation import (
    AgentChatResponsePartType,
    ClientTools,
    Conversation,
    ConversationInitiationData,
)

from ..conftest import TOOL_RESULTS
from ..wire import ANNA, init, is_agent, open_conversation, read_until, until_closed

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")

YES = "Yes, this is Anna."
#: The chargeback agent's answer to YES (after its lookup_dispute tool).
STATES_DISPUTE = "Thank you, Anna. I'm calling about your dispute"


class Seen:
    """What the SDK's callbacks of one conversation saw."""

    def __init__(self) -> None:
        self.agent: list[str] = []
        self.parts: list[tuple[str, AgentChatResponsePartType]] = []
        self.disconnect = None
        self.ended = threading.Event()

    def on_disconnect(self, details) -> None:  # noqa: ANN001
        self.disconnect = details
        self.ended.set()

    def wait_for_agent(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.time() + timeout
        while len(self.agent) < count and time.time() < deadline:
            time.sleep(0.02)
        assert len(self.agent) >= count, self.agent


def conversation(url: str, seen: Seen, variables: dict | None = None, **override) -> Conversation:
    """A text-only SDK conversation with the chargeback agent, its client tools answered."""
    tools = ClientTools()
    for name, result in TOOL_RESULTS.items():
        tools.register(name, lambda _params, r=result: r)
    return Conversation(
        ElevenLabs(base_url=url, api_key="local"), "chargeback", requires_auth=False, client_tools=tools,
        config=ConversationInitiationData(dynamic_variables=ANNA if variables is None else variables,
                                          conversation_config_override=override),
        callback_agent_response=seen.agent.append, callback_disconnect=seen.on_disconnect,
        callback_agent_chat_response_part=lambda text, part: seen.parts.append((text, part)))


def errors(frames: list[dict]) -> list[dict]:
    return [f["error_event"] for f in frames if f["type"] == "error"]


# ---------------------------------------------------------------- 1. user_message text is optional

def test_a_user_message_with_null_text_is_no_words_and_the_conversation_goes_on(backend):
    seen = Seen()
    conv = conversation(backend.base_url, seen)
    conv.start_session()
    seen.wait_for_agent(1)
    conv.send_user_message(None)  # the SDK sends {"type": "user_message", "text": null}
    time.sleep(0.6)
    assert len(seen.agent) == 1 and not seen.ended.is_set(), seen.agent  # not answered, not closed
    conv.send_user_message(YES)
    seen.wait_for_agent(2)
    conv.end_session()
    conversation_id = conv.wait_for_session_end()
    assert seen.agent[1].startswith(STATES_DISPUTE), seen.agent
    got = ElevenLabs(base_url=backend.base_url, api_key="local").conversational_ai.conversations.get(conversation_id)
    assert [t.message for t in got.transcript if t.role == "user"] == [YES]  # no empty caller turn


def test_a_user_message_without_text_is_accepted(backend):
    ws = open_conversation(backend.base_url)
    read_until(ws, is_agent)
    for text in ({}, {"text": None}, {"text": ""}, {"text": "  "}):
        ws.send(json.dumps({"type": "user_message", **text}))
    ws.send(json.dumps({"type": "user_message", "text": YES}))
    seen = read_until(ws, is_agent)
    ws.close()
    agent_turns = [f["agent_response_event"]["agent_response"] for f in seen if is_agent(f)]
    assert len(agent_turns) == 1 and agent_turns[0].startswith(STATES_DISPUTE), agent_turns
    assert errors(seen) == []


# ---------------------------------------------------------------- 2. an empty first message

def test_an_empty_first_message_override_makes_the_agent_wait_for_the_user(backend):
    seen = Seen()
    conv = conversation(backend.base_url, seen, agent={"first_message": ""})
    conv.start_session()
    time.sleep(1.0)  # the chargeback agent re-prompts a silent line after 3 s
    assert seen.agent == [] and not seen.ended.is_set()
    conv.send_user_message(YES)
    seen.wait_for_agent(1)
    conv.end_session()
    conv.wait_for_session_end()
    assert seen.agent[0].startswith(STATES_DISPUTE), seen.agent


def test_an_empty_first_message_the_agent_does_not_allow_is_not_provided(local_backend, dataset):
    agent = dataset.agents["chargeback"]
    platform = agent.platform.model_copy(update={"allowed_overrides": ["text_only"]})
    locked = agent.model_copy(update={"platform": platform})
    server = local_backend(agents={"chargeback": locked})
    ws = open_conversation(server.base_url, first=init(conversation_config_override={
        "text_only": True, "agent": {"first_message": ""}}))
    first = read_until(ws, is_agent)[-1]["agent_response_event"]["agent_response"]
    ws.close()
    assert first.startswith("Hello, this is Nora")


# ---------------------------------------------------------------- 3. missing dynamic variables

MISSING = "Missing required dynamic variables: product_name"


def test_missing_variables_send_the_error_event_after_the_metadata_then_close_1008(backend):
    without = {k: v for k, v in ANNA.items() if k != "product_name"}
    ws = open_conversation(backend.base_url, first=init(dynamic_variables=without))
    frames = until_closed(ws)
    assert [f["type"] for f in frames] == ["conversation_initiation_metadata", "error"]
    assert frames[1]["error_event"] == {"code": 1008, "error_type": "missing_dynamic_variable",
                                        "message": MISSING, "reason": MISSING}
    assert (ws.close_code, ws.close_reason) == (1008, MISSING)


def test_the_sdk_sees_missing_variables_as_a_1008_with_the_same_reason(backend):
    seen = Seen()
    conv = conversation(backend.base_url, seen, variables={k: v for k, v in ANNA.items() if k != "product_name"})
    conv.start_session()
    assert seen.ended.wait(10)
    conversation_id = conv.wait_for_session_end()  # the metadata came first, as the platform's
    assert (seen.disconnect.reason, seen.disconnect.close_code, seen.disconnect.close_reason) == (
        "error", 1008, MISSING)
    assert seen.agent == []
    got = ElevenLabs(base_url=backend.base_url, api_key="local").conversational_ai.conversations.get(conversation_id)
    assert got.status == "failed"


# ---------------------------------------------------------------- 4. the client's client_events

def test_the_sdk_gets_exactly_the_client_events_it_asked_for(backend):
    seen = Seen()
    conv = conversation(backend.base_url, seen, conversation={"client_events": ["agent_chat_response_part"]})
    conv.start_session()
    deadline = time.time() + 5
    while AgentChatResponsePartType.STOP not in [k for _, k in seen.parts] and time.time() < deadline:
        time.sleep(0.02)
    conv.end_session()
    assert conv.wait_for_session_end()  # the metadata is always sent
    assert [k for _, k in seen.parts] == [AgentChatResponsePartType.START, AgentChatResponsePartType.DELTA,
                                          AgentChatResponsePartType.STOP]
    assert seen.parts[1][0].startswith("Hello, this is Nora")
    assert seen.agent == []  # agent_response was not asked for


def kinds_of_a_tool_turn(url: str, **override) -> list[str]:
    """The frame types of the chargeback agent's first message and its answer to YES (which
    calls the lookup_dispute client tool), with the override's conversation section."""
    ws = open_conversation(url, first=init(conversation_config_override={"text_only": True, **override}))
    read_until(ws, lambda f: f["type"] in ("agent_response", "agent_chat_response_part"))
    ws.send(json.dumps({"type": "user_message", "text": YES}))
    frames = read_until(ws, lambda f: STATES_DISPUTE in json.dumps(f))
    frames += read_until(ws, lambda f: f["type"] == "ping")  # pings are always sent (every 0.5 s in tests)
    ws.close()
    return [f["type"] for f in frames]


def test_a_client_events_override_sends_those_events_and_no_others(backend):
    asked = ["agent_response", "agent_tool_request", "client_tool_call"]
    kinds = kinds_of_a_tool_turn(backend.base_url, conversation={"client_events": asked})
    assert set(kinds) == {*asked, "ping"}, kinds  # no agent_tool_response, which the agent's list has
    default = kinds_of_a_tool_turn(backend.base_url)  # none given: the agent's list
    assert "agent_tool_response" in default and "agent_tool_request" not in default, default
    assert "agent_chat_response_part" not in default  # opt-in, as on the platform


def test_client_events_that_are_not_the_contracts_are_refused(backend):
    for events, says in (([], "non-empty list"), (["audio", "thoughts"], "unknown event types: thoughts")):
        ws = open_conversation(backend.base_url, first=init(conversation_config_override={
            "text_only": True, "conversation": {"client_events": events}}))
        until_closed(ws)
        assert ws.close_code == 1008 and says in ws.close_reason, ws.close_reason


# ---------------------------------------------------------------- 5. not understood: an error event

def test_messages_the_backend_cannot_act_on_get_an_error_event_and_the_conversation_goes_on(backend):
    ws = open_conversation(backend.base_url)
    read_until(ws, is_agent)
    ws.send(json.dumps({"type": "client_tool_result", "tool_call_id": "toolu_nobody", "result": "x",
                        "is_error": False}))
    ws.send(json.dumps({"type": "mcp_tool_approval_result", "tool_call_id": "mcp_1", "is_approved": True}))
    ws.send(json.dumps({"type": "multimodal_message", "text": {"type": "user_message", "text": YES},
                        "file": {"type": "file_input", "file_id": "file_1"},
                        "files": [{"type": "file_input", "file_id": "file_1"}]}))
    seen = read_until(ws, is_agent)
    ws.close()
    said = [(e["code"], e["error_type"], e["message"]) for e in errors(seen)]
    assert [s[:2] for s in said] == [(1008, "value_error")] * 3, said
    assert "unknown tool_call_id 'toolu_nobody'" in said[0][2]
    assert said[1][2].startswith("mcp_tool_approval_result")
    assert "files are not supported" in said[2][2] and "'file_1'" in said[2][2]
    assert seen[-1]["agent_response_event"]["agent_response"].startswith(STATES_DISPUTE)  # the text is heard


def test_the_sdks_multimodal_message_is_answered_by_its_text(backend):
    seen = Seen()
    conv = conversation(backend.base_url, seen)
    conv.start_session()
    seen.wait_for_agent(1)
    conv.send_multimodal_message(text=YES, file_ids=["file_1", "file_2"])
    seen.wait_for_agent(2)
    conv.end_session()
    conv.wait_for_session_end()
    assert seen.agent[1].startswith(STATES_DISPUTE) and seen.disconnect.reason == "user"


def test_a_file_only_multimodal_message_is_not_a_turn(backend):
    ws = open_conversation(backend.base_url)
    read_until(ws, is_agent)
    ws.send(json.dumps({"type": "multimodal_message", "file": {"type": "file_input", "file_id": "f"}}))
    ws.send(json.dumps({"type": "user_message", "text": YES}))
    seen = read_until(ws, is_agent)
    ws.close()
    assert len(errors(seen)) == 1 and sum(map(is_agent, seen)) == 1
