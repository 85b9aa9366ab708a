"""Tools in a call: personas' mocks answer client tools through the SDK's ClientTools, the
checks say what was called with what, secrets are checked before connecting, and a hosted call
stores the platform's account of its tool calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicelab.harness.call import Call
from voicelab.spec.errors import ConfigError

from ..asserts import assert_check
from ..conftest import AGENTS
from ..tool_world import client_calls, place

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


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
    assert_check(result, "agent_calls", passed=True,
                 detail_starts="lookup_dispute called once with phone_number=+48512345678 at ")


def test_a_failing_tool_an_unmocked_one_and_a_silent_one_take_the_error_branch(world, local_backend):
    dataset = world(
        erring="    tools:\n      lookup_dispute: {error: core banking timeout}\n",
        unmocked="",
        slow="    tools:\n      lookup_dispute: {result: late, delay_ms: 2500}\n")
    server = local_backend(agents=dataset.agents)
    for persona_id, recorded in (("erring", "core banking timeout"), ("unmocked", "not registered"),
                                 ("slow", "late")):
        result = place(dataset, persona_id, server)
        assert "could not find your dispute" in result.transcript[-1].text, (
            persona_id, [(e.speaker, e.text, e.timestamp) for e in result.transcript], result.end_reason)
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
    assert_check(result, "agent_calls", passed=False,
                 detail="lookup_dispute called, but with phone_number=+48512345678")
    assert not result.success


def test_a_missing_secret_is_one_clear_line(cases, monkeypatch):
    monkeypatch.delenv("SECRET__CRM_TOKEN")
    dataset = cases(fraud=("fraud", "", ""))
    with pytest.raises(ConfigError, match="SECRET__CRM_TOKEN is not set"):
        Call(dataset.request("fraud"), base_url="http://127.0.0.1:9").run()
    from voicelab.lab.batch import run_batch

    runs = Path(dataset.persona_files["fraud"]).parent / "runs"
    with pytest.raises(ConfigError, match="SECRET__CRM_TOKEN is not set"):  # checked before a run exists
        run_batch(str(dataset.persona_files["fraud"]), str(Path(dataset.persona_files["fraud"]).parent / "agents"),
                  runs_root=str(runs), progress=False)
    assert not runs.exists()


# --------------------------------------------------------------------------- the bundled agents, hosted paths, tables


def test_a_hosted_call_stores_the_platforms_tool_calls_and_agrees_with_them(dataset, local_backend, monkeypatch):
    server = local_backend()
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_local")
    monkeypatch.setenv("ELEVENLABS_BASE_URL", server.base_url)
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    result = Call(dataset.request("piotr-lookup-down", backend="elevenlabs")).run()
    assert result.success, result.checks
    history = result.analysis.tool_calls
    assert [c["tool"] for c in history] == ["lookup_dispute", "lookup_dispute", "transfer_to_number"]
    assert history[0]["args"] == {"phone_number": "+48697123456"} and history[0]["is_error"]
    assert history[0]["result"] == "dispute service unavailable"
    assert result.analysis.tool_calls_differ == []  # what the SDK saw is what the platform stored
    assert result.analysis.termination_reason == "transfer_to_number tool was called."
    assert [c.tool for c in result.tool_calls] == ["lookup_dispute", "lookup_dispute", "transfer_to_number"]
    assert result.tool_calls[2].args["transfer_number"] == "+48223330000"  # from the history


def test_the_platforms_simulated_user_gets_the_mocks_and_tool_conditions(tmp_path: Path, local_backend):
    from voicelab.lab.batch import run_batch

    from ..conftest import PERSONAS

    backend = local_backend()
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["piotr-lookup-down", "hanna-confirm-fails"],
                        caller="platform", runs_root=str(tmp_path), run_id="pt", progress=False,
                        local_url=backend.base_url)
    tests = {t["name"]: t for t in backend.platform.tests.values()}
    piotr = tests["voicelab/piotr-lookup-down"]
    assert piotr["tool_mock_overrides"]["lookup_dispute"] == [
        {"mock_result": "dispute service unavailable", "is_error": True}]
    assert piotr["tool_mock_overrides"]["confirm_dispute"] == [  # the agent's default mock
        {"mock_result": '{"recorded": true}', "is_error": False}]
    twice = 'The agent calls the tool lookup_dispute with phone_number="+48697123456" 2 times.'
    assert twice in piotr["success_conditions"]
    assert "The agent never calls the tool confirm_dispute." in piotr["success_conditions"]
    for r in outcome.results:  # the platform's judge and voicelab's checks agree, on tools too
        assert r.success and r.analysis.call_successful == "success", (r.persona_id, r.analysis.rationale)
    piotr_result = next(r for r in outcome.results if r.persona_id == "piotr-lookup-down")
    assert [c.tool for c in piotr_result.tool_calls] == ["lookup_dispute", "lookup_dispute", "transfer_to_number"]
