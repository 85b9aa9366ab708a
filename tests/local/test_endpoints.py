"""The REST endpoints the official clients call beyond conversations: agents create / PATCH /
duplicate / branches, tools, agent-testing list / update / delete / summaries, test invocations
list / resubmit, the conversation token, the conversation summary and `metadata.cost_fiat`.
Driven by the unchanged Python SDK (its pydantic models parse every answer), by the JavaScript
REST SDK `@elevenlabs/elevenlabs-js` where Node has it (it validates every response against its
schemas), and by raw HTTP for bodies no SDK would send."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai.conversation import ClientTools, Conversation, ConversationInitiationData
from elevenlabs.conversational_ai.tests import types as test_types
from elevenlabs.core.api_error import ApiError
from elevenlabs.errors import UnprocessableEntityError
from elevenlabs.types import (
    AdhocAgentConfigOverrideForTestRequestModel,
    AgentConfig,
    AgentConfigOverrideConfig,
    AgentPlatformSettingsRequestModel,
    ConversationalConfig,
    ConversationConfigClientOverrideConfigInput,
    ConversationConfigOutput,
    ConversationConfigOverrideConfig,
    ConversationInitiationClientDataConfigInput,
    PromptAgentApiModelOutput,
    SingleTestRunRequestModel,
    ToolRequestModel,
    TtsConversationalConfigOutput,
    TurnConfig,
)
from elevenlabs.types.tool_request_model_tool_config import (
    ToolRequestModelToolConfig_Client,
    ToolRequestModelToolConfig_Webhook,
)
from websockets.exceptions import ConnectionClosed

from voicelab.local.agent_config import NO_FLOW_REPLY
from voicelab.spec.prose import scenario

from ..conftest import TOOL_RESULTS
from ..contracts import RAW_CLIENT
from ..wire import ANNA, init, is_agent, read_until

ROOT = Path(__file__).resolve().parents[2]
JS_SDK = ROOT / "js" / "node_modules" / "@elevenlabs" / "elevenlabs-js"
KEY = "sk-local-endpoints"

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def sdk(base_url: str, api_key: str = "local") -> ElevenLabs:
    return ElevenLabs(base_url=base_url, api_key=api_key)


def allow_text_only(**agent_switches: bool) -> AgentPlatformSettingsRequestModel:
    """Security > Overrides: text_only (which the SDK sends in text mode) and the agent fields given."""
    return AgentPlatformSettingsRequestModel(overrides=ConversationInitiationClientDataConfigInput(
        conversation_config_override=ConversationConfigClientOverrideConfigInput(
            conversation=ConversationConfigOverrideConfig(text_only=True),
            agent=AgentConfigOverrideConfig(**agent_switches) if agent_switches else None)))


def _client_tools() -> ClientTools:
    """The bundled agents' client tools, as an app that implements them registers them."""
    tools = ClientTools()
    for name, result in TOOL_RESULTS.items():
        tools.register(name, lambda _params, r=result: r)
    return tools


class Talk:
    """One text conversation through the SDK's Conversation: the agent's words, how it ended."""

    def __init__(self, base_url: str, agent_id: str, variables: dict | None = None,
                 replies: tuple[str, ...] = ()) -> None:
        self.agent: list[str] = []
        self.replies = list(replies)
        self.first = threading.Event()
        self.ended = threading.Event()
        self.disconnect = None
        self.conversation = Conversation(
            ElevenLabs(base_url=base_url, api_key=None), agent_id, requires_auth=False,
            config=ConversationInitiationData(dynamic_variables=variables or {}), client_tools=_client_tools(),
            callback_agent_response=self._on_agent, callback_disconnect=self._on_disconnect)

    def _on_agent(self, text: str) -> None:
        self.agent.append(text)
        self.first.set()
        if self.replies:
            self.conversation.send_user_message(self.replies.pop(0))

    def _on_disconnect(self, details) -> None:  # noqa: ANN001
        self.disconnect = details
        self.ended.set()

    def first_words(self, timeout: float = 10) -> str:
        """Start, wait for the agent's first turn, hang up; the first turn's words."""
        self.conversation.start_session()
        assert self.first.wait(timeout), f"no agent turn (disconnect: {self.disconnect})"
        self.conversation.end_session()
        self.conversation.wait_for_session_end()
        return self.agent[0]


# --------------------------------------------------------------------------- agents


def test_a_created_agent_is_stored_returned_updated_and_talks_as_updated(local_backend):
    server = local_backend()
    client = sdk(server.base_url)
    created = client.conversational_ai.agents.create(
        name="API agent", tags=["pushed"],
        conversation_config=ConversationalConfig(
            agent=AgentConfig(first_message="Hello {{caller}}, this is the API agent.", language="en",
                              prompt=PromptAgentApiModelOutput(prompt="You help {{caller}}.", llm="gpt-4o-mini"),
                              dynamic_variables={"dynamic_variable_placeholders": {"caller": "there"}}),
            tts=TtsConversationalConfigOutput(voice_id="21m00Tcm4TlvDq8ikWAM"),
            conversation=ConversationConfigOutput(client_events=["agent_response", "agent_tool_response"],
                                                  max_duration_seconds=120),
            turn=TurnConfig(turn_timeout=9)),
        platform_settings=allow_text_only())
    agent_id = created.agent_id
    assert agent_id.startswith("agent_")

    # GET returns what was pushed: the parts the backend acts on and the parts it only keeps
    got = client.conversational_ai.agents.get(agent_id)
    config = got.conversation_config
    assert got.name == "API agent" and got.tags == ["pushed"]
    assert config.agent.first_message == "Hello {{caller}}, this is the API agent."
    assert config.agent.prompt.prompt == "You help {{caller}}." and config.agent.prompt.llm == "gpt-4o-mini"
    assert dict(config.agent.dynamic_variables)["dynamic_variable_placeholders"] == {"caller": "there"}
    assert config.tts.voice_id == "21m00Tcm4TlvDq8ikWAM"  # kept, though the local voice is espeak
    assert config.conversation.client_events == ["agent_response", "agent_tool_response"]
    assert config.conversation.max_duration_seconds == 120 and config.turn.turn_timeout == 9
    switches = got.platform_settings.overrides.conversation_config_override
    assert switches.conversation.text_only is True and switches.agent.first_message is False
    assert got.metadata.created_at_unix_secs <= got.metadata.updated_at_unix_secs
    listed = client.conversational_ai.agents.list(search="API agent").agents
    assert [a.agent_id for a in listed] == [agent_id] and listed[0].voice_id == "21m00Tcm4TlvDq8ikWAM"

    # a conversation gets the pushed first message, its placeholder filling the variable
    assert Talk(server.base_url, agent_id).first_words() == "Hello there, this is the API agent."
    assert Talk(server.base_url, agent_id, {"caller": "Anna"}).first_words() == "Hello Anna, this is the API agent."

    # PATCH changes only what it names; the next conversation has the new first message
    updated = client.conversational_ai.agents.update(
        agent_id, name="API agent v2",
        conversation_config=ConversationalConfig(agent=AgentConfig(first_message="Updated hello, {{caller}}.")))
    assert updated.name == "API agent v2"
    assert updated.conversation_config.agent.first_message == "Updated hello, {{caller}}."
    assert updated.conversation_config.agent.prompt.prompt == "You help {{caller}}."  # not in the patch: kept
    assert updated.conversation_config.tts.voice_id == "21m00Tcm4TlvDq8ikWAM"
    assert client.conversational_ai.agents.get(agent_id).conversation_config.agent.first_message == (
        "Updated hello, {{caller}}.")
    assert Talk(server.base_url, agent_id).first_words() == "Updated hello, there."

    # the prompt's variables become required; an allowed override takes effect, a refused one closes 1008
    client.conversational_ai.agents.update(agent_id, conversation_config=ConversationalConfig(agent=AgentConfig(
        prompt=PromptAgentApiModelOutput(prompt="Account {{account_id}}."))))
    refused = Talk(server.base_url, agent_id)
    refused.conversation.start_session()
    assert refused.ended.wait(10)
    assert refused.disconnect.close_code == 1008
    assert refused.disconnect.close_reason == "Missing required dynamic variables: account_id"
    client.conversational_ai.agents.update(agent_id, platform_settings=allow_text_only(first_message=True))
    ws = _ws(server.base_url, agent_id, init(dynamic_variables={"account_id": "A-1"},
                                             conversation_config_override={"text_only": True, "agent": {
                                                 "first_message": "Overridden."}}))
    assert read_until(ws, is_agent)[-1]["agent_response_event"]["agent_response"] == "Overridden."
    ws.send(json.dumps({"type": "user_message", "text": "Can you help me?"}))  # no flow: it says so
    assert read_until(ws, is_agent)[-1]["agent_response_event"]["agent_response"] == NO_FLOW_REPLY
    ws.close()


def _ws(base_url: str, agent_id: str, first: str, query: str = ""):
    from websockets.sync.client import connect

    ws = connect(f"{base_url.replace('http', 'ws')}/v1/convai/conversation?agent_id={agent_id}{query}",
                 open_timeout=5, user_agent_header=RAW_CLIENT)
    ws.send(first)
    return ws


def test_an_update_of_a_bundled_agent_keeps_its_flow(local_backend):
    server = local_backend()
    client = sdk(server.base_url)
    client.conversational_ai.agents.update("chargeback", conversation_config=ConversationalConfig(
        agent=AgentConfig(first_message="Good day {{first_name}}, Northbank calling.")))
    talk = Talk(server.base_url, "chargeback", ANNA, replies=("Yes, this is Anna.",))
    talk.conversation.start_session()
    deadline = time.time() + 10
    while len(talk.agent) < 2 and time.time() < deadline:
        time.sleep(0.05)
    talk.conversation.end_session()
    talk.conversation.wait_for_session_end()
    assert talk.agent[0].startswith("Good day Anna, Northbank calling.")
    assert "Premium Gym Membership" in talk.agent[1]  # the flow's next step, as before the update


def test_duplicate_copies_the_agent_and_branches_name_its_main_branch(local_backend):
    server = local_backend(require_key=KEY)
    client = sdk(server.base_url, KEY)
    copy = client.conversational_ai.agents.duplicate("chargeback", name="Chargeback copy")
    assert copy.agent_id.startswith("agent_") and copy.agent_id != "chargeback"
    got = client.conversational_ai.agents.get(copy.agent_id)
    original = client.conversational_ai.agents.get("chargeback")
    assert got.name == "Chargeback copy"
    assert got.conversation_config.agent.first_message == original.conversation_config.agent.first_message
    # an unnamed duplicate keeps the name; what was pushed to the source is copied too
    client.conversational_ai.agents.update(copy.agent_id, conversation_config=ConversationalConfig(
        tts=TtsConversationalConfigOutput(voice_id="voice-x")))
    second = client.conversational_ai.agents.duplicate(copy.agent_id)
    assert client.conversational_ai.agents.get(second.agent_id).name == "Chargeback copy"
    assert client.conversational_ai.agents.get(second.agent_id).conversation_config.tts.voice_id == "voice-x"

    (branch,) = client.conversational_ai.agents.branches.list(copy.agent_id).results
    assert branch.agent_id == copy.agent_id and not branch.is_archived and branch.name == "Main"
    assert got.main_branch_id == branch.id
    # the main branch is one a signed URL may name; the duplicate talks as the original's flow
    signed = client.conversational_ai.conversations.get_signed_url(agent_id=copy.agent_id, branch_id=branch.id)
    from websockets.sync.client import connect

    ws = connect(signed.signed_url, open_timeout=5, user_agent_header=RAW_CLIENT)
    ws.send(init())
    words = read_until(ws, is_agent)[-1]["agent_response_event"]["agent_response"]
    assert words.startswith("Hello, this is Nora") and "Anna Kowalska" in words
    ws.close()
    with pytest.raises(ApiError) as other:
        client.conversational_ai.conversations.get_signed_url(agent_id=copy.agent_id, branch_id="agtbrch_other")
    assert other.value.status_code == 404 and other.value.body["detail"]["status"] == "branch_not_found"
    summaries = client.conversational_ai.agents.summaries.get(agent_ids=[copy.agent_id, "nope"])
    assert summaries[copy.agent_id].data.name == "Chargeback copy"
    assert summaries["nope"].status == "failure" and summaries["nope"].error_code == 404


# --------------------------------------------------------------------------- tools


def test_tools_create_list_get_update_delete(local_backend):
    client = sdk(local_backend().base_url)
    tools = client.conversational_ai.tools
    lookup = tools.create(request=ToolRequestModel(tool_config=ToolRequestModelToolConfig_Client(
        name="lookup_order", description="Finds an order", expects_response=True, response_timeout_secs=5,
        parameters={"type": "object", "required": ["order_id"],
                    "properties": {"order_id": {"type": "string", "description": "The order"}}})))
    hook = tools.create(request=ToolRequestModel(tool_config=ToolRequestModelToolConfig_Webhook(
        name="notify", description="Posts a note", api_schema={"url": "https://example.invalid/notes",
                                                                "method": "POST"})))
    assert lookup.id != hook.id and lookup.access_info.is_creator and lookup.usage_stats.total_calls == 0
    got = tools.get(lookup.id)
    assert got.tool_config.type == "client" and got.tool_config.name == "lookup_order"
    assert got.tool_config.expects_response is True and got.tool_config.parameters.required == ["order_id"]
    assert tools.get(hook.id).tool_config.api_schema.url == "https://example.invalid/notes"

    page = tools.list()
    assert [t.id for t in page.tools] == [hook.id, lookup.id] and not page.has_more  # newest first
    assert [t.id for t in tools.list(types="client").tools] == [lookup.id]
    assert [t.id for t in tools.list(search="look").tools] == [lookup.id]
    first = tools.list(page_size=1)
    assert first.has_more and [t.id for t in tools.list(page_size=1, cursor=first.next_cursor).tools] == [lookup.id]

    renamed = tools.update(lookup.id, request=ToolRequestModel(tool_config=ToolRequestModelToolConfig_Client(
        name="find_order", description="Finds an order")))
    assert renamed.tool_config.name == "find_order" and tools.get(lookup.id).tool_config.name == "find_order"
    tools.delete(hook.id)
    with pytest.raises(ApiError) as gone:
        tools.get(hook.id)
    assert gone.value.status_code == 404 and gone.value.body["detail"]["status"] == "tool_not_found"


# --------------------------------------------------------------------------- agent-testing


def scenario_test(name: str, scenario: str = "Anna Kowalska, who was charged twice, confirms.") -> dict:
    return {"name": name, "simulation_scenario": scenario, "dynamic_variables": ANNA,
            "success_conditions": ["The agent says \"Premium Gym Membership\"."]}


def test_agent_tests_list_update_delete_and_summaries(local_backend):
    tests = sdk(local_backend().base_url).conversational_ai.tests
    first = tests.create(request=test_types.TestsCreateRequestBody_Simulation(**scenario_test("first")))
    second = tests.create(request=test_types.TestsCreateRequestBody_Simulation(**scenario_test("second")))
    page = tests.list()
    assert {t.id for t in page.tests} == {first.id, second.id} and not page.has_more
    assert all(t.type == "simulation" and t.created_at_unix_secs > 0 for t in page.tests)
    assert [t.id for t in tests.list(search="seco").tests] == [second.id]
    assert tests.list(types="tool").tests == []
    one = tests.list(page_size=1)
    assert one.has_more and len(tests.list(page_size=1, cursor=one.next_cursor).tests) == 1

    updated = tests.update(first.id, request=test_types.TestsUpdateRequestBody_Simulation(
        **scenario_test("first, renamed", "Anna Kowalska calls back.")))
    assert updated.name == "first, renamed" and updated.simulation_scenario == "Anna Kowalska calls back."
    assert tests.get(first.id).name == "first, renamed"
    summaries = tests.summaries(test_ids=[first.id, second.id]).tests
    assert summaries[first.id].name == "first, renamed" and summaries[second.id].type == "simulation"

    tests.delete(second.id)
    with pytest.raises(ApiError) as gone:
        tests.get(second.id)
    assert gone.value.status_code == 404
    assert [t.id for t in tests.list().tests] == [first.id]
    with pytest.raises(ApiError) as again:
        tests.delete(second.id)
    assert again.value.status_code == 404


def wait_done(client: ElevenLabs, invocation_id: str):
    deadline = time.time() + 20
    while time.time() < deadline:
        invocation = client.conversational_ai.tests.invocations.get(invocation_id)
        if all(r.status != "pending" for r in invocation.test_runs):
            return invocation
        time.sleep(0.1)
    raise TimeoutError(invocation_id)


def test_invocations_list_and_resubmit(local_backend, dataset):
    client = sdk(local_backend().base_url)
    anna = dataset.personas["anna-double-charge"]
    test = client.conversational_ai.tests.create(request=test_types.TestsCreateRequestBody_Simulation(
        **scenario_test("anna", scenario(anna)), simulation_max_turns=12))
    started = client.conversational_ai.agents.run_tests("chargeback", tests=[SingleTestRunRequestModel(
        test_id=test.id)])
    done = wait_done(client, started.id)
    (run,) = done.test_runs
    assert run.status == "passed"

    page = client.conversational_ai.tests.invocations.list(agent_id="chargeback")
    (summary,) = page.results
    assert summary.id == started.id and summary.test_run_count == 1 and summary.passed_count == 1
    assert summary.pending_count == summary.failed_count == 0 and summary.title == "anna"
    assert client.conversational_ai.tests.invocations.list(agent_id="cases").results == []
    assert [i.id for i in client.conversational_ai.tests.invocations.list(test_id=test.id).results] == [started.id]

    # resubmitted: the same run played again, here against the agent with another first message
    client.conversational_ai.tests.invocations.resubmit(
        started.id, test_run_ids=[run.test_run_id], agent_id="chargeback",
        agent_config_override=AdhocAgentConfigOverrideForTestRequestModel(
            conversation_config=ConversationalConfig(agent=AgentConfig(
                first_message="Hi, Northbank here. Am I speaking with {{first_name}} {{last_name}}?")),
            platform_settings=AgentPlatformSettingsRequestModel()))
    assert client.conversational_ai.tests.invocations.get(started.id).test_runs[0].status == "pending"
    again = wait_done(client, started.id)
    (rerun,) = again.test_runs
    assert rerun.test_run_id == run.test_run_id and rerun.status == "passed"
    assert rerun.agent_responses[0].message == "Hi, Northbank here. Am I speaking with Anna Kowalska?"
    assert client.conversational_ai.agents.get("chargeback").conversation_config.agent.first_message != (
        "Hi, Northbank here. Am I speaking with {{first_name}} {{last_name}}?")  # the run's, not the agent's
    with pytest.raises(ApiError) as unknown:
        client.conversational_ai.tests.invocations.resubmit(started.id, test_run_ids=["run_nope"],
                                                            agent_id="chargeback")
    assert unknown.value.status_code == 404


# --------------------------------------------------------------------------- conversations


def test_the_conversation_token_opens_the_websocket_once(local_backend):
    server = local_backend(require_key=KEY)
    client = sdk(server.base_url, KEY)
    token = client.conversational_ai.conversations.get_webrtc_token(agent_id="chargeback")
    assert token.token and token.conversation_id.startswith("conv_")
    ws = _ws(server.base_url, "chargeback", init(), f"&conversation_signature={token.token}")
    frames = read_until(ws, is_agent)
    assert frames[0]["conversation_initiation_metadata_event"]["conversation_id"] == token.conversation_id
    ws.close()
    # one conversation per token; `token=` works as well; none at all is refused
    ws = _ws(server.base_url, "chargeback", init(), f"&conversation_signature={token.token}")
    with pytest.raises(ConnectionClosed):
        read_until(ws, is_agent)
    assert ws.close_code == 1008
    fresh = client.conversational_ai.conversations.get_webrtc_token(agent_id="chargeback")
    ws = _ws(server.base_url, "chargeback", init(), f"&token={fresh.token}")
    assert read_until(ws, is_agent)[0]["conversation_initiation_metadata_event"]["conversation_id"] == (
        fresh.conversation_id)
    ws.close()
    ws = _ws(server.base_url, "chargeback", init())
    with pytest.raises(ConnectionClosed):
        read_until(ws, is_agent)
    assert ws.close_code == 1008
    with pytest.raises(ApiError) as missing:
        client.conversational_ai.conversations.get_webrtc_token(agent_id="nope")
    assert missing.value.status_code == 404 and missing.value.body["detail"]["status"] == "agent_not_found"


def test_conversation_carries_cost_fiat_and_has_a_summary(backend):
    talk = Talk(backend.base_url, "chargeback", ANNA, replies=("Yes, this is Anna.",))
    talk.conversation.start_session()
    deadline = time.time() + 10
    while len(talk.agent) < 2 and time.time() < deadline:
        time.sleep(0.05)
    talk.conversation.end_session()
    conversation_id = talk.conversation.wait_for_session_end()
    deadline = time.time() + 10  # the server finishes its record once it has seen the close
    while backend.history.get(conversation_id).ended is None and time.time() < deadline:
        time.sleep(0.05)
    raw = httpx.get(f"{backend.base_url}/v1/convai/conversations/{conversation_id}").json()
    assert "cost_fiat" in raw["metadata"] and raw["metadata"]["cost_fiat"] is None  # required, nullable
    client = sdk(backend.base_url)
    assert client.conversational_ai.conversations.get(conversation_id).metadata.cost_fiat is None

    summary = client.conversational_ai.conversations.get_summary(conversation_id)
    assert summary.conversation_id == conversation_id and summary.agent_id == "chargeback"
    assert summary.status == "done" and summary.message_count == 3 and summary.transcript_summary
    assert [m.role for m in summary.messages] == ["agent", "user", "agent"] and not summary.messages_omitted
    assert summary.messages[1].message == "Yes, this is Anna." and conversation_id in summary.note
    short = client.conversational_ai.conversations.get_summary(conversation_id, max_messages=2)
    assert short.messages is None and short.messages_omitted is True and short.message_count == 3
    with pytest.raises(ApiError) as missing:
        client.conversational_ai.conversations.get_summary("conv_nope")
    assert missing.value.status_code == 404


# --------------------------------------------------------------------------- bad bodies


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/v1/convai/agents/create", {}, "conversation_config"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": []}, "conversation_config"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": {"agent": {"first_message": 5}}}, "first_message"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": {"agent": {"language": "xx"}}}, "language"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": {"conversation": {"client_events": ["nope"]}}},
     "client_events"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": {"conversation": {"max_duration_seconds": 0}}},
     "max_duration_seconds"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": {"agent": {"dynamic_variables": {
        "dynamic_variable_placeholders": {"x": {"nested": 1}}}}}}, "dynamic_variables"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": {}, "platform_settings": {"overrides": 5}},
     "overrides"),
    ("POST", "/v1/convai/agents/create", {"conversation_config": {}, "tags": "one"}, "tags"),
    ("PATCH", "/v1/convai/agents/chargeback", [1], ""),
    ("PATCH", "/v1/convai/agents/chargeback", {"name": 5}, "name"),
    ("POST", "/v1/convai/agents/chargeback/duplicate", {"name": ["x"]}, "name"),
    ("POST", "/v1/convai/tools", {}, "tool_config"),
    ("POST", "/v1/convai/tools", {"tool_config": {"type": "magic", "name": "x"}}, "type"),
    ("POST", "/v1/convai/tools", {"tool_config": {"type": "client", "name": "x"}}, "description"),
    ("POST", "/v1/convai/agent-testing/summaries", {"test_ids": "all"}, "test_ids"),
    ("POST", "/v1/convai/agent-testing/summaries", {"test_ids": ["a", "a"]}, "test_ids"),
    ("GET", "/v1/convai/agent-testing?page_size=0", None, "page_size"),
    ("GET", "/v1/convai/test-invocations?cursor=nope", None, "cursor"),
    ("GET", "/v1/convai/conversation/token", None, "agent_id"),
    ("GET", "/v1/convai/agents/chargeback/branches?limit=x", None, "limit"),
])
def test_bad_bodies_are_422_in_the_platforms_shape(backend, method, path, body, field):
    got = httpx.request(method, backend.base_url + path, json=body, timeout=10)
    assert got.status_code == 422, got.text
    detail = got.json()["detail"]
    assert isinstance(detail, list) and all({"loc", "msg", "type"} <= set(d) for d in detail)
    assert field in json.dumps([d["loc"] for d in detail])


def test_bad_bodies_of_stored_things_and_unknown_ids(local_backend):
    server = local_backend()
    client = sdk(server.base_url)
    with pytest.raises(UnprocessableEntityError) as bad:
        client.conversational_ai.agents.create(conversation_config={"agent": {"prompt": {"prompt": ["x"]}}})
    assert bad.value.body["detail"][0]["loc"] == ["body", "conversation_config", "agent", "prompt", "prompt"]
    test = client.conversational_ai.tests.create(request=test_types.TestsCreateRequestBody_Simulation(
        **scenario_test("t")))
    for path, body in ((f"/v1/convai/agent-testing/{test.id}",
                        {"name": "t", "type": "llm", "success_examples": [{"response": 1}]}),
                       (f"/v1/convai/agent-testing/{test.id}", {"simulation_scenario": "s"})):
        got = httpx.put(server.base_url + path, json=body)
        assert got.status_code == 422, got.text
    started = client.conversational_ai.agents.run_tests("chargeback", tests=[SingleTestRunRequestModel(
        test_id=test.id)])
    resubmit = f"/v1/convai/test-invocations/{started.id}/resubmit"
    for body in ({"agent_id": "chargeback"}, {"test_run_ids": [], "agent_id": "chargeback"},
                 {"test_run_ids": ["r"]},
                 {"test_run_ids": [started.test_runs[0].test_run_id], "agent_id": "chargeback",
                  "agent_config_override": {"conversation_config": {"agent": {"first_message": 1}},
                                            "platform_settings": {}}}):
        got = httpx.post(server.base_url + resubmit, json=body)
        assert got.status_code == 422, got.text
    for method, path, body in (("PATCH", "/v1/convai/agents/nope", {}),
                               ("POST", "/v1/convai/agents/nope/duplicate", {}),
                               ("GET", "/v1/convai/agents/nope/branches", None),
                               ("GET", "/v1/convai/tools/nope", None),
                               ("PUT", "/v1/convai/agent-testing/nope", {"name": "x"}),
                               ("POST", "/v1/convai/test-invocations/nope/resubmit", {}),
                               ("GET", "/v1/convai/agents/chargeback?branch_id=agtbrch_nope", None)):
        got = httpx.request(method, server.base_url + path, json=body)
        assert got.status_code == 404 and set(got.json()["detail"]) == {"status", "message"}, (path, got.text)


# --------------------------------------------------------------------------- the JavaScript REST SDK

JS_SCRIPT = r"""
const { ElevenLabsClient } = require(process.argv[2]);
const client = new ElevenLabsClient({ apiKey: "local", baseUrl: process.argv[3] });
const ai = client.conversationalAi;
const out = {};
const step = async (name, f) => {
  try { out[name] = { ok: true, value: await f() }; }
  catch (e) { out[name] = { ok: false, error: String(e && e.message || e).slice(0, 2000) }; }
  return out[name].value;
};
(async () => {
  const created = await step("agents.create", () => ai.agents.create({
    name: "JS agent",
    conversationConfig: { agent: { firstMessage: "Hello from JS.", language: "en", prompt: { prompt: "Be brief." } } },
    platformSettings: { overrides: { conversationConfigOverride: { conversation: { textOnly: true } } } },
  }));
  const id = created && created.agentId;
  await step("agents.get", () => ai.agents.get(id));
  await step("agents.update", () => ai.agents.update(id, { conversationConfig: { agent: { firstMessage: "Hi." } } }));
  await step("agents.duplicate", () => ai.agents.duplicate(id, { name: "JS copy" }));
  await step("agents.list", () => ai.agents.list());
  await step("agents.summaries", () => ai.agents.summaries.get({ agentIds: [id] }));
  await step("branches.list", () => ai.agents.branches.list(id));
  const tool = await step("tools.create", () => ai.tools.create({
    toolConfig: { type: "client", name: "js_tool", description: "A tool" } }));
  await step("tools.list", () => ai.tools.list());
  await step("tools.get", () => ai.tools.get(tool.id));
  const test = await step("tests.create", () => ai.tests.create({
    type: "simulation", name: "js test", simulationScenario: "Anna Kowalska confirms.",
    dynamicVariables: JSON.parse(process.argv[5]), successConditions: [] }));
  await step("tests.list", () => ai.tests.list());
  await step("tests.summaries", () => ai.tests.summaries({ testIds: [test.id] }));
  await step("tests.update", () => ai.tests.update(test.id, {
    type: "simulation", name: "js test 2", simulationScenario: "Anna Kowalska confirms." }));
  const invocation = await step("agents.runTests", () => ai.agents.runTests("chargeback", {
    tests: [{ testId: test.id }] }));
  await step("invocations.list", () => ai.tests.invocations.list({ agentId: "chargeback" }));
  await step("invocations.resubmit", () => ai.tests.invocations.resubmit(invocation.id, {
    testRunIds: [invocation.testRuns[0].testRunId], agentId: "chargeback" }));
  await step("tests.delete", () => ai.tests.delete(test.id));
  await step("conversations.getWebrtcToken", () => ai.conversations.getWebrtcToken({ agentId: "chargeback" }));
  await step("conversations.get", () => ai.conversations.get(process.argv[4]));
  await step("conversations.getSummary", () => ai.conversations.getSummary(process.argv[4]));
  console.log(JSON.stringify(out));
})();
"""


@pytest.mark.skipif(shutil.which("node") is None or not JS_SDK.is_dir(),
                    reason="Node and js/node_modules (@elevenlabs/elevenlabs-js) are installed by scripts/setup.sh")
def test_the_javascript_rest_sdk_parses_every_answer(local_backend, tmp_path):
    """The JS SDK validates each response against its schemas: a missing required field or a
    wrong type fails the call there, where the Python SDK would let it through."""
    server = local_backend()
    talk = Talk(server.base_url, "chargeback", ANNA)
    talk.first_words()
    conversation_id = talk.conversation.wait_for_session_end()
    script = tmp_path / "rest.cjs"
    script.write_text(JS_SCRIPT)
    done = subprocess.run(["node", str(script), str(JS_SDK), server.base_url, conversation_id, json.dumps(ANNA)],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    failed = {name: r["error"] for name, r in results.items() if not r["ok"]}
    assert not failed, failed
    assert len(results) == 21
    assert results["agents.get"]["value"]["conversationConfig"]["agent"]["firstMessage"] == "Hello from JS."
    assert results["agents.update"]["value"]["conversationConfig"]["agent"]["firstMessage"] == "Hi."
    assert results["conversations.getWebrtcToken"]["value"]["conversationId"].startswith("conv_")
    assert results["conversations.getSummary"]["value"]["conversationId"] == conversation_id
