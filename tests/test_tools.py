"""Client tools, first slice of the tools issue: an agent spec declares them, the local backend's
flow calls them over the wire as the platform does (`client_tool_call`, then the client's
`client_tool_result`, or a timeout), personas mock them through the SDK's own ClientTools, and
checks say what was called with what."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from elevenlabs import ElevenLabs
from websockets.sync.client import connect

from voicelab.call import Call
from voicelab.datasets import load_dataset
from voicelab.errors import DatasetError

from .conftest import AGENTS

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")

AGENT = """
id: disputes
name: Dispute desk
first_message: "Hello {{first_name}}, let me look up your dispute."
prompt: Look the dispute up by phone number, then tell the caller what you found.
tools:
  - name: lookup_dispute
    description: Find the caller's open dispute by phone number.
    parameters:
      phone_number: {type: string, description: "E.164"}
    required: [phone_number]
    response_timeout_s: 1
flow:
  start: lookup
  any:
    - when: ["bye"]
      goto: found
  steps:
    lookup:
      call:
        tool: lookup_dispute
        args: {phone_number: "{{phone_number}}"}
        on_success: found
        on_error: not_found
    found:
      say: "I found your dispute. Goodbye."
      end_call: true
      outcome: success
    not_found:
      say: "I could not find your dispute; a colleague will call you. Goodbye."
      end_call: true
      outcome: failure
"""

PERSONA = """
  - id: {id}
    name: Ann Lee
    agent: disputes
    summary: a cardholder with an open dispute
    variables: {{first_name: Ann, phone_number: "+48512345678"}}
{extra}"""


@pytest.fixture()
def world(tmp_path: Path):
    """Agents (the bundled ones and the dispute desk) and a persona file built per test."""
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents)
    (agents / "disputes.yaml").write_text(AGENT, encoding="utf-8")

    def build(**personas: str):
        path = tmp_path / "personas.yaml"
        path.write_text("personas:" + "".join(PERSONA.format(id=pid, extra=extra) for pid, extra in personas.items()),
                        encoding="utf-8")
        return load_dataset(path, agents)
    return build


def place(dataset, persona_id: str, server) -> object:
    return Call(dataset.request(persona_id, max_duration_s=20), base_url=server.base_url).run()


def client_calls(result) -> list:
    """The client tool calls of a result (every local call also ends with the end_call system tool)."""
    return [c for c in result.tool_calls if c.type == "client"]


def test_get_agent_reports_the_tools_in_the_platforms_shape(world, local_backend):
    dataset = world(ann="")
    server = local_backend(agents=dataset.agents)
    agent = ElevenLabs(base_url=server.base_url, api_key="local").conversational_ai.agents.get("disputes")
    (tool,) = agent.conversation_config.agent.prompt.tools
    assert (tool.type, tool.name, tool.expects_response, tool.response_timeout_secs) == (
        "client", "lookup_dispute", True, 1)
    assert tool.parameters.required == ["phone_number"] and "phone_number" in tool.parameters.properties


def test_a_mocked_tool_answers_and_the_agent_goes_on_with_its_result(world, local_backend):
    dataset = world(ann="""    tools:
      lookup_dispute: {result: {amount: "49.99", merchant: StreamMax}}
    expect:
      agent_says: ["found your dispute"]
      agent_calls:
        - {tool: lookup_dispute, args: {phone_number: "+48512345678"}}
      agent_never_calls: [transfer_to_number]
""")
    result = place(dataset, "ann", local_backend(agents=dataset.agents))
    assert result.success, result.checks
    (call,) = client_calls(result)
    assert call.tool == "lookup_dispute" and call.args == {"phone_number": "+48512345678"}
    assert call.result == {"amount": "49.99", "merchant": "StreamMax"} and not call.is_error
    detail = next(c.detail for c in result.checks if c.name.startswith("agent_calls"))
    assert detail.startswith("lookup_dispute called once with phone_number=+48512345678 at ")


def test_a_failing_tool_an_unmocked_one_and_a_silent_one_take_the_error_branch(world, local_backend):
    dataset = world(
        erring="    tools:\n      lookup_dispute: {error: core banking timeout}\n",
        unmocked="",
        slow="    tools:\n      lookup_dispute: {result: late, delay_ms: 2500}\n")
    server = local_backend(agents=dataset.agents)
    for persona_id, recorded in (("erring", "core banking timeout"), ("unmocked", "not registered"),
                                 ("slow", "late")):
        result = place(dataset, persona_id, server)
        assert "could not find your dispute" in result.transcript[-1].text, (persona_id, result.transcript)
        assert result.end_reason == "agent_ended"
        (call,) = client_calls(result)
        if persona_id == "slow":  # the agent waited its 1 s, carried on and hung up before the answer
            assert call.result is None and call.latency_ms is None
        else:
            assert recorded in str(call.result) and call.is_error


def test_a_check_fails_when_the_agent_calls_the_tool_with_another_argument(world, local_backend):
    dataset = world(ann="""    tools:
      lookup_dispute: {result: found}
    expect:
      agent_calls:
        - {tool: lookup_dispute, args: {phone_number: "+48000000000"}}
""")
    result = place(dataset, "ann", local_backend(agents=dataset.agents))
    (check,) = [c for c in result.checks if c.name.startswith("agent_calls")]
    assert not check.passed and not result.success
    assert check.detail == "lookup_dispute called, but with phone_number=+48512345678"


def test_a_result_for_an_unknown_call_id_is_ignored_and_the_real_one_counts(world, local_backend):
    dataset = world(ann="")
    server = local_backend(agents=dataset.agents)
    ws_url = server.base_url.replace("http", "ws") + "/v1/convai/conversation?agent_id=disputes"
    with connect(ws_url) as ws:
        ws.send(json.dumps({"type": "conversation_initiation_client_data",
                            "dynamic_variables": {"first_name": "Ann", "phone_number": "+48512345678"}}))
        call = None
        while call is None:
            event = json.loads(ws.recv(timeout=5))
            call = event.get("client_tool_call") if event["type"] == "client_tool_call" else None
        assert call["tool_name"] == "lookup_dispute" and call["parameters"] == {"phone_number": "+48512345678"}
        ws.send(json.dumps({"type": "client_tool_result", "tool_call_id": "toolu_nobody", "result": "x",
                            "is_error": True}))
        ws.send(json.dumps({"type": "client_tool_result", "tool_call_id": call["tool_call_id"],
                            "result": {"amount": "49.99"}, "is_error": False}))
        said = []
        while not said:
            event = json.loads(ws.recv(timeout=5))
            if event["type"] == "agent_response":
                said.append(event["agent_response_event"]["agent_response"])
    assert said == ["I found your dispute. Goodbye."]


@pytest.mark.parametrize(("extra", "words"), [
    ("    tools:\n      open_dispute: {result: ok}\n", "mocks 'open_dispute', which is not a tool of agent 'disputes'"),
    ("    expect:\n      agent_calls: [{tool: refund}]\n", "expects a call of 'refund'"),
    ("    expect:\n      agent_calls: [{tool: lookup_dispute, args: {phone: x}}]\n", "has no parameter 'phone'"),
    ("    expect:\n      agent_never_calls: [teleport]\n", "neither a tool of agent 'disputes' nor a system tool"),
    ("    tools:\n      lookup_dispute: {result: ok, error: down}\n", "a result or an error, not both"),
])
def test_mocks_and_expected_calls_are_validated(world, extra, words):
    with pytest.raises(DatasetError, match=words):
        world(ann=extra)
