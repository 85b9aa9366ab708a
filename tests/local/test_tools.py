"""The local backend's tools as the platform runs them: client tool calls over the wire, real
webhook requests, system tools (transfer), the tool events an agent lets out, GET agent's tool
shapes, and agent-testing's tool-call tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from elevenlabs import ElevenLabs

from ..conftest import AGENTS
from ..tool_world import place
from ..wire import is_agent, open_conversation, read_until, until_closed

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def test_get_agent_reports_the_tools_in_the_platforms_shape(world, local_backend):
    dataset = world(ann="")
    server = local_backend(agents=dataset.agents)
    agent = ElevenLabs(base_url=server.base_url, api_key="local").conversational_ai.agents.get("disputes")
    (tool,) = agent.conversation_config.agent.prompt.tools
    assert (tool.type, tool.name, tool.expects_response, tool.response_timeout_secs) == (
        "client", "lookup_dispute", True, 1)
    assert tool.parameters.required == ["phone_number"] and "phone_number" in tool.parameters.properties


def test_a_result_for_an_unknown_call_id_is_ignored_and_the_real_one_counts(world, local_backend):
    dataset = world(ann="")
    server = local_backend(agents=dataset.agents)
    first = json.dumps({"type": "conversation_initiation_client_data",
                        "dynamic_variables": {"first_name": "Ann", "phone_number": "+48512345678"}})
    with open_conversation(server.base_url, first, agent_id="disputes") as ws:
        *_, asked = read_until(ws, lambda f: f["type"] == "client_tool_call", answer_tools=False)
        call = asked["client_tool_call"]
        assert call["tool_name"] == "lookup_dispute" and call["parameters"] == {"phone_number": "+48512345678"}
        ws.send(json.dumps({"type": "client_tool_result", "tool_call_id": "toolu_nobody", "result": "x",
                            "is_error": True}))
        ws.send(json.dumps({"type": "client_tool_result", "tool_call_id": call["tool_call_id"],
                            "result": {"amount": "49.99"}, "is_error": False}))
        *_, answer = read_until(ws, is_agent, answer_tools=False)
    assert answer["agent_response_event"]["agent_response"] == "I found your dispute. Goodbye."


def test_a_webhook_tool_is_a_real_request_with_variables_and_its_result_feeds_the_flow(cases, crm, local_backend):
    dataset = cases(fraud=("Someone used my card, it's fraud.", "", """    expect:
      agent_says: ["case number is C-1042"]
      agent_calls: [{tool: open_case, args: {reason: fraud}}]
      agent_never_calls: [transfer_to_number]
"""))
    result = place(dataset, "fraud", local_backend(agents=dataset.agents))
    assert result.success, (result.checks, result.transcript)
    (request,) = crm.requests
    assert request["path"] == "/cases/+48512345678" and request["body"] == {"reason": "fraud"}
    assert request["headers"]["X-Caller"] == "Cas" and request["headers"]["Authorization"] == "Bearer tok-123"
    webhook, end = result.tool_calls
    assert (webhook.tool, webhook.type, webhook.args, webhook.is_error) == ("open_case", "webhook",
                                                                            {"reason": "fraud"}, False)
    assert webhook.result == {"case": {"number": "C-1042", "status": "open"}} and webhook.latency_ms is not None
    assert (end.tool, end.type) == ("end_call", "system")
    assert "tok-123" not in result.model_dump_json()  # the secret went to the webhook, and nowhere else


def test_a_webhook_that_answers_500_or_hangs_takes_the_error_branch(cases, crm, local_backend):
    dataset = cases(down=("It's fraud.", "/down", ""), hang=("It's fraud.", "/hang", ""))
    server = local_backend(agents=dataset.agents)
    for persona_id, error in (("down", "HTTP 500 from open_case: internal error"),
                              ("hang", "open_case did not answer within 1 s")):
        result = place(dataset, persona_id, server)
        assert "case system is not answering" in result.transcript[-1].text, result.transcript
        webhook = next(c for c in result.tool_calls if c.tool == "open_case")
        assert webhook.is_error and webhook.result == error, webhook
    assert len(crm.requests) == 2


def test_a_persona_mocks_a_webhook_and_the_backend_branches_on_the_result(cases, crm, local_backend):
    dataset = cases(dup=("I was charged twice.", "", """    tools:
      open_case: {result: {case: {number: C-7, status: duplicate}}}
    expect:
      agent_says: ["already have case C-7"]
      agent_calls: [{tool: open_case, args: {reason: duplicate}}]
"""))
    server = local_backend(agents=dataset.agents)
    result = place(dataset, "dup", server)
    assert result.success, (result.checks, result.transcript)
    assert crm.requests == []  # the mock answered; no request left the backend
    stored = ElevenLabs(base_url=server.base_url, api_key="local").conversational_ai.conversations.get(
        result.conversation_id)
    assert "voicelab__tool_mocks" not in stored.conversation_initiation_client_data.dynamic_variables
    assert "tok-123" not in json.dumps(stored.model_dump(mode="json"))  # nor the secret

    first = json.dumps({"type": "conversation_initiation_client_data", "dynamic_variables": {
        "first_name": "Cas", "phone_number": "+48512345678", "crm_url": "x", "secret__crm_token": "t",
        "voicelab__tool_mocks": "{\"open_case\": {\"result\": 1, \"error\": \"both\"}}"}})
    with open_conversation(server.base_url, first, agent_id="cases") as ws:  # a broken mock variable
        until_closed(ws)  # is refused, not crashed on
    assert ws.close_code == 1008 and "voicelab__tool_mocks" in ws.close_reason


def test_transfer_to_number_ends_the_call_with_the_platforms_reason(cases, local_backend):
    dataset = cases(human=("Can I talk to a person, please?", "", """    expect:
      agent_calls: [{tool: transfer_to_number}]
      agent_never_calls: [open_case]
"""))
    server = local_backend(agents=dataset.agents)
    result = place(dataset, "human", server)
    assert result.success, (result.checks, result.transcript)
    assert result.end_reason == "agent_ended"
    (transfer,) = result.tool_calls
    assert transfer.tool == "transfer_to_number" and transfer.type == "system"
    assert transfer.args == {"transfer_number": "+48223334444", "reason": "caller asked for a person"}
    client = ElevenLabs(base_url=server.base_url, api_key="local")
    history = client.conversational_ai.conversations.get(result.conversation_id)
    assert history.metadata.termination_reason == "transfer_to_number tool was called."
    (call,) = [c for item in history.transcript for c in (item.tool_calls or [])]
    assert call.tool_name == "transfer_to_number" and json.loads(call.params_as_json)["transfer_number"] == \
        "+48223334444"


def test_tool_events_go_out_only_when_the_agents_client_events_allow(cases, local_backend):
    dataset = cases(human=("A person, please.", "", ""))
    quiet = dataset.agents["cases"].model_copy(deep=True)
    quiet.platform.client_events = ["audio", "agent_response", "user_transcript"]
    for agent, expected in ((dataset.agents["cases"], ["agent_tool_request", "agent_tool_response"]), (quiet, [])):
        server = local_backend(agents={"cases": agent})
        first = json.dumps({"type": "conversation_initiation_client_data", "dynamic_variables": {
            "first_name": "Cas", "phone_number": "+48512345678", "crm_url": "http://127.0.0.1:9",
            "secret__crm_token": "t"}})
        with open_conversation(server.base_url, first, agent_id="cases") as ws:
            ws.send(json.dumps({"type": "user_message", "text": "A person, please."}))
            kinds = [frame["type"] for frame in until_closed(ws)]
        assert [k for k in kinds if k.startswith("agent_tool")] == expected, kinds


def test_get_agent_serves_webhook_and_system_tools_in_the_sdks_shapes(cases, local_backend):
    dataset = cases(fraud=("fraud", "", ""))
    server = local_backend(agents=dataset.agents)
    agent = ElevenLabs(base_url=server.base_url, api_key="local").conversational_ai.agents.get("cases")
    webhook, end, transfer = agent.conversation_config.agent.prompt.tools
    assert (webhook.type, webhook.api_schema.url, webhook.api_schema.method) == (
        "webhook", "{{crm_url}}/cases/{{phone_number}}", "POST")
    assert webhook.api_schema.request_body_schema.properties["reason"].enum == ["fraud", "duplicate"]
    assert (end.type, end.params.system_tool_type) == ("system", "end_call")
    assert transfer.params.system_tool_type == "transfer_to_number"
    assert transfer.params.transfers[0].transfer_destination.phone_number == "+48223334444"


def test_tool_call_tests_made_from_the_simulation_judge_the_agents_next_turn(tmp_path: Path, local_backend):
    """Agent-testing's tool-call tests: cut at the caller's turn before each expected call, and at
    every point where a never-called tool could have been called; the local backend replays the
    chat history through the flow and judges the agent's next turn."""
    from voicelab.lab.batch import run_batch

    from ..conftest import PERSONAS

    backend = local_backend()
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "sven-wrong-person"],
                        caller="platform", runs_root=str(tmp_path), run_id="tu", progress=False,
                        local_url=backend.base_url)
    tool_tests = [t for t in backend.platform.tests.values() if t["type"] == "tool"]
    confirm = next(t for t in tool_tests if t["name"] == "voicelab/anna-double-charge/confirm_dispute-called-6")
    assert confirm["chat_history"][-1] == {"role": "user", "message": "Yes, please go ahead with the dispute.",
                                           "time_in_call_secs": confirm["chat_history"][-1]["time_in_call_secs"]}
    assert confirm["tool_call_parameters"]["parameters"] == [
        {"path": "decision", "eval": {"type": "regex", "pattern": "(?i)^keep$"}}]
    anna = next(r for r in outcome.results if r.persona_id == "anna-double-charge")
    assert [(t.tool, t.expect, t.history_turns, t.status) for t in anna.analysis.tool_tests] == [
        ("lookup_dispute", "called", 2, "passed"), ("confirm_dispute", "called", 6, "passed"),
        ("transfer_to_number", "not_called", 0, "passed"), ("transfer_to_number", "not_called", 2, "passed"),
        ("transfer_to_number", "not_called", 6, "passed"), ("transfer_to_number", "not_called", 10, "passed")]
    assert anna.analysis.tool_tests[1].rationale == "confirm_dispute called (phone_number=+48601234567, decision=keep)"
    sven = next(r for r in outcome.results if r.persona_id == "sven-wrong-person")
    assert {t.tool for t in sven.analysis.tool_tests} == {"lookup_dispute", "confirm_dispute", "transfer_to_number"}
    assert all(t.status == "passed" for t in sven.analysis.tool_tests)
    assert all(r.success and r.analysis.verdict()[0] == "success" for r in outcome.results)


def test_a_tool_call_test_fails_on_the_wrong_argument_or_an_unwanted_call(local_backend):
    """Through the Python SDK, as a user would write them: tool tests the agent must fail."""
    from elevenlabs import ElevenLabs
    from elevenlabs.conversational_ai.tests.types import TestsCreateRequestBody_Tool
    from elevenlabs.types import SingleTestRunRequestModel

    backend = local_backend()
    client = ElevenLabs(api_key="local", base_url=backend.base_url)
    agreed = [{"role": "agent", "message": "Hello, am I speaking with Anna?", "time_in_call_secs": 0},
              {"role": "user", "message": "Yes, this is Anna.", "time_in_call_secs": 3},
              {"role": "agent", "message": None, "time_in_call_secs": 4, "tool_results": [
                  {"tool_name": "lookup_dispute", "request_id": "t1", "is_error": False, "tool_has_been_called": True,
                   "result_value": '{"amount": "49.99", "merchant": "StreamMax"}'}]},
              {"role": "user", "message": "Yes, please go ahead.", "time_in_call_secs": 9}]
    variables = {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567",
                 "product_name": "Premium Gym Membership", "chargeback_reason": "double charge"}

    def run(name: str, history: list, parameters: dict) -> tuple[str, str]:
        test = client.conversational_ai.tests.create(request=TestsCreateRequestBody_Tool(
            name=name, chat_history=history, dynamic_variables=variables, tool_call_parameters=parameters))
        invocation = client.conversational_ai.agents.run_tests(
            "chargeback", tests=[SingleTestRunRequestModel(test_id=test.id)])
        while invocation.test_runs[0].status == "pending":
            time.sleep(0.1)
            invocation = client.conversational_ai.tests.invocations.get(invocation.id)
        (run,) = invocation.test_runs
        return run.status, run.condition_result.rationale.summary

    withdraw = {"referenced_tool": {"id": "confirm_dispute", "type": "client"},
                "parameters": [{"path": "decision", "eval": {"type": "exact", "expected_value": "withdraw"}}]}
    assert run("wrong decision", agreed, withdraw) == (
        "failed", "confirm_dispute called (phone_number=+48601234567, decision=keep) but decision='keep', "
                  "expected 'withdraw'")
    keep = {**withdraw, "parameters": [{"path": "decision", "eval": {"type": "regex", "pattern": "^ke+p$"}}]}
    assert run("right decision", agreed, keep)[0] == "passed"
    absent = {"referenced_tool": {"id": "lookup_dispute", "type": "client"}, "verify_absence": True}
    assert run("lookup after yes", agreed[:2], absent) == ("failed", "lookup_dispute was called")
    judged = {**withdraw, "parameters": [{"path": "decision", "eval": {"type": "llm", "description": "keep"}}]}
    status, why = run("llm eval", agreed, judged)
    assert status == "failed" and "needs a model" in why
    with pytest.raises(Exception) as bad:  # a broken regex is refused when the test is created
        run("bad regex", agreed, {**withdraw, "parameters": [{"path": "decision",
                                                              "eval": {"type": "regex", "pattern": "("}}]})
    assert "422" in str(bad.value) and "bad regex" in str(bad.value)


def test_response_tests_judge_what_the_agent_says_next(local_backend):
    """agent-testing's `llm` (response) tests through the Python SDK: the agent's next turn after
    the chat history, judged by a condition of voicelab's grammar, else by the closest example;
    a condition the backend cannot read fails saying so."""
    from elevenlabs import ElevenLabs
    from elevenlabs.conversational_ai.tests.types import TestsCreateRequestBody_Llm
    from elevenlabs.types import SingleTestRunRequestModel

    backend = local_backend()
    client = ElevenLabs(api_key="local", base_url=backend.base_url)
    wrong = [{"role": "agent", "message": "Hello, am I speaking with Anna?", "time_in_call_secs": 0},
             {"role": "user", "message": "No, you have the wrong number.", "time_in_call_secs": 3}]
    variables = {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567",
                 "product_name": "Premium Gym Membership", "chargeback_reason": "double charge"}

    def run(name: str, **judging: object) -> tuple[str, str, str]:
        test = client.conversational_ai.tests.create(request=TestsCreateRequestBody_Llm(
            name=name, chat_history=wrong, dynamic_variables=variables, **judging))
        invocation = client.conversational_ai.agents.run_tests(
            "chargeback", tests=[SingleTestRunRequestModel(test_id=test.id)])
        while invocation.test_runs[0].status == "pending":
            time.sleep(0.1)
            invocation = client.conversational_ai.tests.invocations.get(invocation.id)
        (run,) = invocation.test_runs
        return run.status, run.condition_result.rationale.summary, run.agent_responses[0].message

    status, why, said = run("apologises", success_condition='The agent says "sorry".')
    assert status == "passed" and "sorry" in said.lower()
    assert run("refund talk", success_condition='The agent says "refund".')[0] == "failed"
    like = [{"response": said, "type": "success"}]
    unlike = [{"response": "Thank you Anna, I will open the dispute for the double charge now.", "type": "failure"}]
    status, why, _ = run("by examples", success_condition="The agent apologises for the wrong number",
                         success_examples=like, failure_examples=unlike)
    assert status == "passed" and "closest success example 1.00" in why
    assert run("examples swapped", success_examples=[{**unlike[0], "type": "success"}],
               failure_examples=[{**like[0], "type": "failure"}])[0] == "failed"
    status, why, _ = run("needs a model", success_condition="The agent is empathetic")
    assert status == "failed" and "without a model" in why


def test_a_failed_tool_call_test_turns_the_platforms_verdict_to_failure():
    from voicelab.spec.models import PlatformTestRun, PlatformToolTest

    run = PlatformTestRun(call_successful="success", rationale="All 5 success conditions met.", tool_tests=[
        PlatformToolTest(tool="confirm_dispute", expect="called", history_turns=6, status="failed",
                         rationale="confirm_dispute not called: the next turn called no tool"),
        PlatformToolTest(tool="transfer_to_number", expect="not_called", history_turns=0, status="passed")])
    verdict, why = run.verdict()
    assert verdict == "failure"
    assert why == ("All 5 success conditions met. Tool-call tests failed: confirm_dispute called after 6 turns: "
                   "confirm_dispute not called: the next turn called no tool")
    assert PlatformTestRun(call_successful="success", tool_tests=run.tool_tests[1:]).verdict()[0] == "success"
