"""Hosted-platform features, tested offline: the same code paths as against api.elevenlabs.io,
pointed at the local backend, which implements the same endpoints."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from voicelab.harness.call import Call
from voicelab.harness.runners.phone import phone_settings
from voicelab.lab.batch import run_batch
from voicelab.lab.tables import load_runs
from voicelab.local import HttpFault
from voicelab.spec.datasets import load_dataset
from voicelab.spec.errors import ConfigError

from ..conftest import AGENTS, PERSONAS

KEY = "sk_hostedtestkey_0123456789abcdef01"


@pytest.fixture()
def hosted_env(monkeypatch, local_backend):
    """A private agent on a backend that plays the hosted platform, and the settings to reach it."""
    server = local_backend(require_key=KEY)
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    monkeypatch.setenv("ELEVENLABS_BASE_URL", server.base_url)
    monkeypatch.setenv("ELEVENLABS_REQUIRES_AUTH", "true")
    return server


def hosted_request(dataset, persona_id: str):
    return dataset.request(persona_id, backend="elevenlabs")


def test_platform_caller_runs_agent_tests_with_repeats(tmp_path: Path, hosted_env, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "kevin-in-a-hurry"],
                        repeats=2, caller="platform", backend="elevenlabs", runs_root=str(tmp_path), run_id="p",
                        progress=False)
    results = outcome.results
    assert sorted(r.call_id for r in results) == ["anna-double-charge#1", "anna-double-charge#2",
                                                  "kevin-in-a-hurry#1", "kevin-in-a-hurry#2"]
    for r in results:
        assert r.caller == "platform" and r.status == "completed" and r.success
        assert r.analysis.source == "platform-test" and r.analysis.call_successful == "success"
        assert "success conditions met" in r.analysis.rationale
        assert r.transcript[0].speaker == "agent" and len(r.transcript) >= 5
    tests = [t for t in hosted_env.platform.tests.values() if t["type"] == "simulation"]
    assert {t["name"] for t in tests} == {"voicelab/anna-double-charge", "voicelab/kevin-in-a-hurry"}
    anna = next(t for t in tests if t["name"] == "voicelab/anna-double-charge")
    assert "Anna Kowalska" in anna["simulation_scenario"] and anna["type"] == "simulation"
    assert 'The agent says "Premium Gym Membership".' in anna["success_conditions"]
    invocation, *tool_tests = hosted_env.platform.invocations.values()  # then anna's tool-call tests, per run
    assert invocation["repeat_count"] == 2 and len(tool_tests) == 2
    calls = load_runs("p", root=tmp_path).calls
    assert calls["agrees_with_platform"].all() and set(calls["platform_call_successful"]) == {"success"}


def test_platform_runs_can_be_cancelled(tmp_path: Path, local_backend, monkeypatch):
    monkeypatch.setattr("voicelab.local.platform.PENDING_S", 5.0)  # the simulations stay pending for 5 s
    backend = local_backend()
    cancel = threading.Event()

    def once_pending() -> None:  # a condition, not a timer: a loaded machine may start late
        deadline = time.monotonic() + 60
        while not backend.platform.invocations and time.monotonic() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=once_pending, daemon=True).start()
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "jonas-de-entwickler"],
                        caller="platform", runs_root=str(tmp_path), run_id="pc", progress=False,
                        cancel_event=cancel, local_url=backend.base_url)
    assert outcome.interrupted
    assert all(inv["cancelled"] for inv in backend.platform.invocations.values())
    assert {r.end_reason for r in outcome.results} == {"cancelled"}


def test_a_run_interrupted_while_its_tests_are_being_started_cancels_what_the_platform_started(
        tmp_path: Path, local_backend, monkeypatch):
    """The interrupt lands while the run-tests request is on its way (the platform takes 1 s to
    answer it): once it lands, the invocation it made is cancelled and every call is reported
    cancelled, none left running on the platform unseen."""
    from voicelab.local.platform import Platform

    monkeypatch.setattr("voicelab.local.platform.PENDING_S", 5.0)
    arrived = threading.Event()
    original = Platform.run_tests

    async def slow_run_tests(self, request):  # noqa: ANN001, ANN202
        import asyncio

        arrived.set()
        await asyncio.sleep(1.0)
        return await original(self, request)

    monkeypatch.setattr(Platform, "run_tests", slow_run_tests)
    backend = local_backend()
    cancel = threading.Event()
    threading.Thread(target=lambda: (arrived.wait(60), cancel.set()), daemon=True).start()
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge"], repeats=2,
                        caller="platform", runs_root=str(tmp_path), run_id="pw", progress=False,
                        cancel_event=cancel, local_url=backend.base_url)
    assert outcome.interrupted
    (invocation,) = backend.platform.invocations.values()
    assert invocation["cancelled"]
    assert [r.end_reason for r in outcome.results] == ["cancelled", "cancelled"]


def test_hosted_call_stores_the_platforms_analysis(dataset, hosted_env, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    result = Call(hosted_request(dataset, "olga-credit-question")).run()
    assert result.success
    a = result.analysis
    assert a.source == "platform" and a.status == "done" and a.call_successful == "success"
    assert a.termination_reason == "end_call tool was called."
    assert a.call_duration_secs == int(result.duration_seconds)
    assert [t["role"] for t in a.transcript] == [e.speaker for e in result.transcript]
    assert a.transcript_summary
    record = hosted_env.history.get(result.conversation_id)
    assert record.client_data["authorization_method"] == "signed_url"


def test_private_agent_needs_signed_url_and_key(dataset, hosted_env, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    monkeypatch.setenv("ELEVENLABS_REQUIRES_AUTH", "false")
    unsigned = Call(hosted_request(dataset, "anna-double-charge")).run()
    assert unsigned.status == "failed" and "ELEVENLABS_REQUIRES_AUTH=true" in unsigned.error

    monkeypatch.setenv("ELEVENLABS_REQUIRES_AUTH", "true")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_wrong_key")
    wrong = Call(hosted_request(dataset, "anna-double-charge")).run()
    assert wrong.status == "failed" and "HTTP 401" in wrong.error and "ELEVENLABS_API_KEY" in wrong.error
    assert wrong.transcript == []

    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "no-such-agent")
    missing = Call(hosted_request(dataset, "anna-double-charge")).run()
    assert "HTTP 404" in missing.error and "agent id" in missing.error


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_and_server_errors_are_retried_visibly(dataset, hosted_env, monkeypatch, status):
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    hosted_env.faults.add(HttpFault(status=status, path="get-signed-url", times=2, retry_after=0.05))
    result = Call(hosted_request(dataset, "anna-double-charge")).run()
    assert result.success
    assert [(r["status"], r["what"]) for r in result.retries] == [(status, "getting a signed URL")] * 2


def test_forbidden_is_a_clear_error(dataset, hosted_env, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    hosted_env.faults.add(HttpFault(status=403, path="get-signed-url"))
    result = Call(hosted_request(dataset, "anna-double-charge")).run()
    assert result.status == "failed" and "HTTP 403" in result.error and "permissions" in result.error


def test_refused_override_is_explained_and_the_run_goes_on(tmp_path: Path):
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents)
    spec = agents / "applicant-screening.yaml"
    spec.write_text(spec.read_text() + "platform:\n  allowed_overrides: [first_message]\n")
    outcome = run_batch(str(PERSONAS), str(agents), persona_ids=["jonas-de-entwickler", "anna-double-charge"],
                        runs_root=str(tmp_path / "runs"), run_id="o", progress=False)
    by_persona = {r.persona_id: r for r in outcome.results}
    refused = by_persona["jonas-de-entwickler"]
    assert refused.status == "failed" and refused.end_reason == "error"
    assert "refused the override of 'language'" in refused.error and "Security > Overrides" in refused.error
    assert by_persona["anna-double-charge"].success


@pytest.mark.parametrize(("provider", "call_type"), [("twilio", "twilio"), ("sip", "sip_trunking")])
def test_outbound_phone_calls(tmp_path: Path, hosted_env, monkeypatch, provider, call_type):
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    monkeypatch.setenv("ELEVENLABS_PHONE_NUMBER_ID", "phnum_test")
    monkeypatch.setenv("ELEVENLABS_PHONE_PROVIDER", provider)
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "kevin-in-a-hurry"],
                        caller="phone", backend="elevenlabs", runs_root=str(tmp_path), run_id=provider,
                        progress=False)
    results = {r.persona_id: r for r in outcome.results}
    assert all(r.success and r.caller == "phone" for r in results.values()), results
    assert results["kevin-in-a-hurry"].end_reason == "caller_ended"
    assert results["anna-double-charge"].end_reason == "agent_ended"
    record = hosted_env.history.get(results["anna-double-charge"].conversation_id)
    assert record.phone_call["type"] == call_type
    assert record.phone_call["external_number"] == "+48601234567" and record.phone_call["direction"] == "outbound"
    assert results["anna-double-charge"].analysis.call_successful == "success"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="ignore")


def test_phone_settings_are_checked_before_dialling(dataset, monkeypatch, tmp_path: Path):
    request = hosted_request(dataset, "anna-double-charge")
    with pytest.raises(ConfigError, match="ELEVENLABS_PHONE_NUMBER_ID"):
        phone_settings(request)
    monkeypatch.setenv("ELEVENLABS_PHONE_NUMBER_ID", "phnum_1")
    monkeypatch.setenv("ELEVENLABS_PHONE_PROVIDER", "carrier-pigeon")
    with pytest.raises(ConfigError, match="twilio or sip"):
        phone_settings(request)
    path = tmp_path / "p.yaml"
    path.write_text("personas:\n  - {id: x, name: X, summary: s, agent: applicant-screening, variables: "
                    "{first_name: a, last_name: b, position: c, years_experience: '1', current_employer: d}}\n")
    monkeypatch.delenv("ELEVENLABS_PHONE_PROVIDER")
    with pytest.raises(ConfigError, match="no variables.phone_number"):
        phone_settings(load_dataset(path, AGENTS).request("x"))


DISAGREEING = """
personas:
  - id: anna-judged-strictly
    name: Anna Kowalska
    summary: Calm customer charged twice for her gym membership.
    agent: chargeback
    variables: {first_name: Anna, last_name: Kowalska, phone_number: "+48601234567",
                product_name: Premium Gym Membership, chargeback_reason: duplicate charge}
    caller:
      replies:
        - {when: ["am i speaking"], say: "Yes, this is Anna."}
        - {when: ["still want"], say: "Yes, please go ahead with the dispute."}
        - {when: ["anything else"], say: "No, that's all, thank you."}
    expect:
      agent_says: ["Premium Gym Membership"]
      max_duration_s: 5      # voicelab checks this; no success condition says it
  - id: hangs-up-at-once
    name: Hasty Harry
    summary: Picks up and hangs up after one line.
    agent: chargeback
    variables: {first_name: Harry, last_name: Hill, phone_number: "+15550001111",
                product_name: Espresso machine, chargeback_reason: not as described}
    caller: {hang_up_after_turns: 1}
"""


def test_the_platforms_verdict_can_disagree_with_voicelabs(tmp_path: Path, hosted_env, monkeypatch):
    """The local agent-testing endpoint plays the scenario the client sent and judges with the
    success conditions it sent, so `agrees_with_platform` is a real column: false both ways here."""
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    personas = tmp_path / "personas.yaml"
    personas.write_text(DISAGREEING)
    run_batch(str(personas), str(AGENTS), caller="platform", backend="elevenlabs", runs_root=str(tmp_path / "runs"),
              run_id="d", progress=False)
    calls = load_runs("d", root=tmp_path / "runs").calls.set_index("persona_id")
    strict = calls.loc["anna-judged-strictly"]
    assert not strict["success"] and "max_duration_s" in strict["failed_checks"]  # voicelab: too long
    assert strict["platform_call_successful"] == "success"  # the platform: every condition it was sent is met
    hasty = calls.loc["hangs-up-at-once"]
    assert hasty["success"]  # voicelab: nothing expected, nothing failed
    assert hasty["platform_call_successful"] == "failure"  # the platform: the agent did not end the call
    assert "ends the call properly" in hasty["platform_verdict"]
    assert not calls["agrees_with_platform"].any()


def test_local_simulation_reads_the_scenario_it_was_sent(hosted_env):
    """A reply rule in the scenario text changes the conversation: the texts voicelab writes are
    what the simulated user plays, not the persona looked up by name."""
    from elevenlabs import ElevenLabs

    client = ElevenLabs(base_url=hosted_env.base_url, api_key=KEY)
    variables = {"first_name": "Ann", "last_name": "Lee", "phone_number": "+15551234567",
                 "product_name": "Headphones", "chargeback_reason": "never arrived"}

    def simulate(scenario: str):
        return client.conversational_ai.agents.simulate_conversation(
            "chargeback", simulation_specification={"simulated_user_config": {"prompt": {"prompt": scenario}},
                                                    "dynamic_variables": variables},
            extra_evaluation_criteria=[{"id": "product", "name": "product",
                                        "conversation_goal_prompt": 'The agent says "Headphones".'},
                                       {"id": "vague", "name": "vague", "conversation_goal_prompt": "Be nice."}],
            new_turns_limit=12)

    wrong = simulate('You are Bob. If asked about am i speaking, say: "No, wrong number."')
    right = simulate('You are Ann. If asked about am i speaking, say: "Yes, this is me."')
    assert wrong.simulated_conversation[1].message == "No, wrong number."
    assert wrong.analysis.evaluation_criteria_results["product"].result == "failure"
    assert right.simulated_conversation[1].message == "Yes, this is me."
    assert right.analysis.evaluation_criteria_results["product"].result == "success"
    assert right.analysis.evaluation_criteria_results["vague"].result == "unknown"  # never silently passed
