"""Protocol conformance of the local backend, driven by the unchanged elevenlabs SDK (sync and
async) over real websockets and HTTP, per elevenlabs-protocol.md."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai.conversation import (
    AgentChatResponsePartType,
    AsyncConversation,
    ClientTools,
    Conversation,
    ConversationInitiationData,
)
from elevenlabs.core.api_error import ApiError

ANNA = {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567",
        "product_name": "Premium Gym Membership", "chargeback_reason": "duplicate charge"}


class Recorder:
    """Collects every SDK callback of one conversation."""

    def __init__(self) -> None:
        self.agent: list[str] = []
        self.parts: list[tuple[str, AgentChatResponsePartType]] = []
        self.pings: list[int] = []
        self.disconnect = None
        self.ended = threading.Event()
        self.conv: Conversation | None = None
        self.replies: list[str] = []

    def on_agent(self, text: str) -> None:
        self.agent.append(text)
        if self.replies and self.conv is not None:
            self.conv.send_user_message(self.replies.pop(0))

    def on_disconnect(self, details) -> None:  # noqa: ANN001
        self.disconnect = details
        self.ended.set()


def agent_tools(loop: asyncio.AbstractEventLoop | None = None) -> ClientTools:
    """The bundled agents' client tools, as an app that implements them registers them."""
    from ..conftest import TOOL_RESULTS

    tools = ClientTools(loop=loop)
    for name, result in TOOL_RESULTS.items():
        tools.register(name, lambda _params, r=result: r)
    return tools


def sync_conversation(url: str, agent_id: str, variables: dict, rec: Recorder, **kwargs) -> Conversation:
    kwargs.setdefault("client_tools", agent_tools())
    conv = Conversation(
        ElevenLabs(base_url=url, api_key=None), agent_id, requires_auth=False,
        config=ConversationInitiationData(dynamic_variables=variables),
        callback_agent_response=rec.on_agent, callback_disconnect=rec.on_disconnect,
        callback_agent_chat_response_part=lambda t, k: rec.parts.append((t, k)),
        callback_latency_measurement=rec.pings.append, **kwargs)
    rec.conv = conv
    return conv


def test_sync_conversation_end_to_end(backend):
    rec = Recorder()
    rec.replies = ["Yes, this is Anna.", "Yes, please go ahead.", "No, that's all, thank you."]
    conv = sync_conversation(backend.base_url, "chargeback", ANNA, rec)
    conv.start_session()
    assert rec.ended.wait(10), "the agent never ended the call"
    conversation_id = conv.wait_for_session_end()

    # metadata arrived exactly once (the SDK asserts that) and gave the id
    assert conversation_id and conversation_id.startswith("conv_")
    # first message with the dynamic variables rendered
    assert rec.agent[0].startswith("Hello, this is Nora") and "Anna Kowalska" in rec.agent[0]
    assert "{{" not in " ".join(rec.agent)
    # one agent_response per turn, driven by the flow
    assert len(rec.agent) == 4 and "Premium Gym Membership" in rec.agent[1] and "Goodbye" in rec.agent[-1]
    # streamed text parts are opt-in (client_events), as on the platform
    assert rec.parts == []
    # end_call closes with 1000 and the production reason
    assert rec.disconnect.reason == "agent"
    assert rec.disconnect.close_code == 1000
    assert rec.disconnect.close_reason == "end_call tool was called."


def test_streamed_text_parts_when_the_agent_lists_them(local_backend, dataset):
    agent = dataset.agents["chargeback"]
    events = [*agent.platform.client_events, "agent_chat_response_part"]
    streaming = agent.model_copy(update={"platform": agent.platform.model_copy(update={"client_events": events})})
    server = local_backend(agents={"chargeback": streaming})
    rec = Recorder()
    rec.replies = ["Yes, this is Anna.", "Yes, please go ahead.", "No, that's all, thank you."]
    conv = sync_conversation(server.base_url, "chargeback", ANNA, rec)
    conv.start_session()
    assert rec.ended.wait(10)
    conv.wait_for_session_end()
    kinds = [k for _, k in rec.parts]  # start, delta, stop per turn
    assert kinds.count(AgentChatResponsePartType.START) == 4 == kinds.count(AgentChatResponsePartType.STOP)
    assert [t for t, k in rec.parts if k == AgentChatResponsePartType.DELTA] == rec.agent
    got = ElevenLabs(base_url=server.base_url, api_key="x").conversational_ai.agents.get("chargeback")
    assert "agent_chat_response_part" in got.conversation_config.conversation.client_events


def test_rest_shapes_of_served_conversation(backend):
    rec = Recorder()
    rec.replies = ["Yes, this is Anna.", "No, withdraw it, it's resolved."]
    conv = sync_conversation(backend.base_url, "chargeback", ANNA, rec)
    conv.start_session()
    assert rec.ended.wait(10)
    conversation_id = conv.wait_for_session_end()
    client = ElevenLabs(base_url=backend.base_url, api_key=None)

    got = client.conversational_ai.conversations.get(conversation_id)
    assert got.conversation_id == conversation_id and got.agent_id == "chargeback"
    assert got.status == "done"
    said = [t for t in got.transcript if t.message is not None]
    assert [t.role for t in said] == ["agent", "user", "agent", "user", "agent"]
    assert said[1].message == "Yes, this is Anna."
    assert all(isinstance(t.time_in_call_secs, int) for t in got.transcript)
    # every tool call is an agent item without words, then its result, as the platform stores them
    calls = [(c.tool_name, json.loads(c.params_as_json)) for t in got.transcript for c in (t.tool_calls or [])]
    assert calls == [("lookup_dispute", {"phone_number": "+48601234567"}),
                     ("confirm_dispute", {"phone_number": "+48601234567", "decision": "withdraw"}),
                     ("end_call", {})]
    results = [r for t in got.transcript for r in (t.tool_results or [])]
    assert [json.loads(r.result_value) for r in results[:2]] == [{"status": "open"}, {"recorded": True}]
    assert got.agent_message_count == 3 and got.user_message_count == 2
    assert got.metadata.termination_reason == "end_call tool was called."
    assert got.metadata.call_duration_secs >= 0 and got.metadata.text_only is True
    assert got.analysis.call_successful == "success"

    page = client.conversational_ai.conversations.list(agent_id="chargeback", page_size=100)
    assert conversation_id in [c.conversation_id for c in page.conversations]
    newest = page.conversations[0]
    assert newest.start_time_unix_secs >= page.conversations[-1].start_time_unix_secs

    agent = client.conversational_ai.agents.get("chargeback")
    assert agent.agent_id == "chargeback" and agent.name.startswith("Northbank")
    assert "{{first_name}}" in agent.conversation_config.agent.first_message


def test_rest_errors_are_api_errors(backend):
    client = ElevenLabs(base_url=backend.base_url, api_key=None)
    with pytest.raises(ApiError) as err:
        client.conversational_ai.agents.get("no-such-agent")
    assert err.value.status_code == 404
    with pytest.raises(ApiError) as err:
        client.conversational_ai.conversations.get("conv_missing")
    assert err.value.status_code == 404


def test_async_conversation_with_context_and_activity(backend):
    async def main():
        agent_turns: list[str] = []
        done = asyncio.Event()
        details = {}

        async def on_agent(text: str) -> None:
            agent_turns.append(text)

        async def on_disconnect(d) -> None:  # noqa: ANN001
            details["d"] = d
            done.set()

        conv = AsyncConversation(
            ElevenLabs(base_url=backend.base_url, api_key=None), "chargeback", requires_auth=False,
            config=ConversationInitiationData(dynamic_variables=ANNA),
            client_tools=agent_tools(asyncio.get_running_loop()),
            callback_agent_response=on_agent, callback_disconnect=on_disconnect)
        await conv.start_session()
        while not agent_turns:
            await asyncio.sleep(0.01)
        await conv.send_contextual_update("Caller is on a mobile phone.")
        # user_activity keeps the agent from re-prompting a quiet caller (silence after 3 s)
        for _ in range(8):
            await asyncio.sleep(0.5)
            await conv.register_user_activity()
        assert len(agent_turns) == 1, agent_turns
        await conv.send_user_message("Yes, this is Anna.")
        while len(agent_turns) < 2:
            await asyncio.sleep(0.01)
        await conv.send_user_message("Not now, goodbye.")
        await asyncio.wait_for(done.wait(), 10)
        conversation_id = await conv.wait_for_session_end()
        return agent_turns, details["d"], conversation_id

    turns, details, conversation_id = asyncio.run(main())
    assert details.reason == "agent" and details.close_code == 1000
    assert "Goodbye" in turns[-1]
    record = backend.history.get(conversation_id)
    assert record.contextual_updates == ["Caller is on a mobile phone."]


def test_silence_gets_reprompted(backend):
    rec = Recorder()
    conv = sync_conversation(backend.base_url, "chargeback", ANNA, rec)
    conv.start_session()
    time.sleep(4.5)  # the flow re-prompts after 3 s of silence, and again 3 s later
    conv.end_session()
    conv.wait_for_session_end()
    assert len(rec.agent) == 2 and rec.agent[1] == "Hello? Are you still there, Anna?"


def test_silence_after_an_answer_gets_reprompted_too(local_backend):
    """The silence timer restarts after each agent turn, not only after the first message (and
    does not depend on a ping's pong waking the session)."""
    backend = local_backend(ping_interval_s=30)
    rec = Recorder()
    rec.replies = ["Yes, this is Anna."]
    conv = sync_conversation(backend.base_url, "chargeback", ANNA, rec)
    conv.start_session()
    deadline = time.time() + 8
    while len(rec.agent) < 3 and time.time() < deadline:
        time.sleep(0.05)
    conv.end_session()
    conv.wait_for_session_end()
    assert "Premium Gym Membership" in rec.agent[1]
    assert rec.agent[2:3] == ["Hello? Are you still there, Anna?"], rec.agent


def test_pings_carry_ping_ms(backend):
    rec = Recorder()
    conv = sync_conversation(backend.base_url, "chargeback", ANNA, rec)
    conv.start_session()
    time.sleep(1.8)  # pings every 0.5 s in tests; the first has ping_ms null
    conv.end_session()
    conv.wait_for_session_end()
    assert rec.pings, "no latency measurement: ping_ms never set"
    assert all(0 <= ms < 1000 for ms in rec.pings)


@pytest.mark.parametrize(("agent_id", "variables", "reason"), [
    ("no-such-agent", ANNA, "Agent not found"),
    ("chargeback", {k: v for k, v in ANNA.items() if k != "product_name"},
     "Missing required dynamic variables: product_name"),
])
def test_refusals_close_1008_with_reason(backend, agent_id, variables, reason):
    rec = Recorder()
    conv = sync_conversation(backend.base_url, agent_id, variables, rec)
    conv.start_session()
    assert rec.ended.wait(10)
    # an unknown agent is refused before the conversation begins (no metadata, no id); missing
    # variables after the metadata, with an error event first, as the platform does
    assert (conv.wait_for_session_end() is None) == (agent_id == "no-such-agent")
    assert rec.disconnect.reason == "error"
    assert rec.disconnect.close_code == 1008
    assert rec.disconnect.close_reason == reason
    assert rec.agent == []


def test_signed_url_points_back_at_the_backend(backend):
    client = ElevenLabs(base_url=backend.base_url, api_key="any")
    signed = client.conversational_ai.conversations.get_signed_url(agent_id="chargeback").signed_url
    assert signed.startswith(backend.base_url.replace("http", "ws")) and "conversation_signature=" in signed
    rec = Recorder()
    conv = sync_conversation(backend.base_url, "chargeback", ANNA, rec)
    conv.requires_auth = True
    conv.start_session()
    deadline = time.time() + 5
    while not rec.agent and time.time() < deadline:
        time.sleep(0.05)
    conv.end_session()
    conv.wait_for_session_end()
    assert rec.agent and "Anna" in rec.agent[0]
