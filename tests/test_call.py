"""The Call core through the real SDK against the local backend: every bundled persona, the
CallResult contract, timeouts, dropped connections, the caller styles, and the hosted path."""

from __future__ import annotations

import asyncio
import json

import pytest

from voicelab.call import Call
from voicelab.errors import ConfigError
from voicelab.local import Fault
from voicelab.models import CallRequest


def request(dataset, persona_id: str, **kwargs) -> CallRequest:
    persona = dataset.persona(persona_id)
    kwargs.setdefault("max_duration_s", persona.caller.timeout_s or 30)
    return CallRequest(persona=persona, agent=dataset.agent_for(persona), **kwargs)


def test_every_bundled_persona_meets_its_expectations(dataset, backend):
    async def all_calls():
        calls = [Call(request(dataset, pid), base_url=backend.base_url).arun() for pid in dataset.personas]
        return await asyncio.gather(*calls)

    results = asyncio.run(all_calls())
    failures = {r.persona_id: [f"{c.name}: {c.detail}" for c in r.checks if not c.passed] or r.error
                for r in results if not r.success}
    assert not failures, failures
    assert len(results) == len(dataset.personas) >= 16


def test_result_keeps_the_conversation_service_contract(dataset, backend):
    result = Call(request(dataset, "anna-double-charge"), base_url=backend.base_url).run()
    data = json.loads(result.model_dump_json())
    assert isinstance(data["conversation_id"], str) and data["conversation_id"].startswith("conv_")
    assert data["status"] in ("completed", "failed") and data["status"] == "completed"
    assert isinstance(data["duration_seconds"], float) and 0 < data["duration_seconds"] < 30
    assert data["transcript"][0]["speaker"] == "agent"
    for entry in data["transcript"]:
        assert entry["speaker"] in ("agent", "user")
        assert isinstance(entry["text"], str) and entry["text"]
        assert isinstance(entry["timestamp"], float | int) and 0 <= entry["timestamp"] <= data["duration_seconds"]
    timestamps = [e["timestamp"] for e in data["transcript"]]
    assert timestamps == sorted(timestamps)
    for key in ("run_id", "call_id", "persona_id", "agent_id", "backend", "caller", "mode", "started_at",
                "end_reason", "error", "metrics", "checks", "success", "analysis", "audio_path"):
        assert key in data, key
    assert data["end_reason"] == "agent_ended" and data["started_at"].endswith("Z")
    m = data["metrics"]
    assert m["turns"] == len(data["transcript"]) == m["agent_turns"] + m["user_turns"]
    assert len(m["response_latency_ms"]) == m["user_turns"]
    # the backend's own record agrees with ours
    record = backend.history.get(data["conversation_id"])
    assert [t["message"] for t in record.transcript] == [e["text"] for e in data["transcript"]]


def test_injected_latency_shows_in_response_latency(dataset, fresh_backend):
    """Compared within one run: the same call with and without 250 ms of agent latency."""
    quick = Call(request(dataset, "anna-double-charge"), base_url=fresh_backend.base_url).run()
    fresh_backend.latency_s = 0.25
    slow = Call(request(dataset, "anna-double-charge"), base_url=fresh_backend.base_url).run()
    assert len(slow.metrics.response_latency_ms) == len(quick.metrics.response_latency_ms) == 3
    for with_latency, without in zip(slow.metrics.response_latency_ms, quick.metrics.response_latency_ms,
                                     strict=True):
        assert with_latency - without >= 240, (with_latency, without)


def test_timeout_ends_the_call(dataset, backend):
    result = Call(request(dataset, "silent-line-chargeback", max_duration_s=4), base_url=backend.base_url).run()
    assert result.end_reason == "timeout" and result.status == "completed"
    assert 3.9 <= result.duration_seconds < 6
    assert [e.speaker for e in result.transcript] == ["agent", "agent"], "first message, then one re-prompt"


def test_dropped_connection_is_a_failed_call_with_partial_transcript(dataset, fresh_backend):
    fresh_backend.faults.add(Fault(kind="drop", after_agent_turns=2))
    result = Call(request(dataset, "anna-double-charge"), base_url=fresh_backend.base_url).run()
    assert result.status == "failed" and result.end_reason == "disconnected"
    assert "1006" in result.error and "dropped" in result.error
    assert [e.speaker for e in result.transcript][:3] == ["agent", "user", "agent"]
    assert not result.success
    assert result.conversation_id is not None


def test_backend_error_close_is_a_failed_call(dataset, fresh_backend):
    fresh_backend.faults.add(Fault(kind="close", after_agent_turns=1, close_code=1002, reason="llm_timeout"))
    result = asyncio.run(Call(request(dataset, "anna-double-charge"), base_url=fresh_backend.base_url).arun())
    assert result.status == "failed" and result.end_reason == "error"
    assert "1002" in result.error and "llm_timeout" in result.error
    assert len(result.transcript) >= 1


def test_unreachable_backend_is_a_failed_call(dataset):
    result = Call(request(dataset, "anna-double-charge"), base_url="http://127.0.0.1:9").run()
    assert result.status == "failed" and result.end_reason == "error" and result.error
    assert result.transcript == []


def test_styles_differ_in_behaviour(dataset, backend):
    def run(pid: str):
        return Call(request(dataset, pid, max_duration_s=12), base_url=backend.base_url).run()

    impatient = run("kevin-in-a-hurry")
    assert impatient.end_reason == "caller_ended" and impatient.metrics.user_turns == 4
    assert "no time" in impatient.transcript[-1].text

    confused = run("maria-confused-subscription")
    user_lines = [e.text for e in confused.transcript if e.speaker == "user"]
    assert user_lines[0] == "Sorry, what do you mean?" and user_lines.count("Sorry, what do you mean?") == 3
    agent_lines = [e.text for e in confused.transcript if e.speaker == "agent"]
    assert agent_lines[0] == agent_lines[1], "the agent repeats itself for a confused caller"

    silent = run("silent-line-chargeback")
    assert silent.metrics.user_turns == 0 and silent.end_reason == "timeout"
    assert sum("still there" in e.text for e in silent.transcript) >= 2

    interrupting = run("leo-talks-over")
    assert interrupting.metrics.interruptions >= 1
    speakers = [e.speaker for e in interrupting.transcript]
    assert ["user", "user"] in [speakers[i:i + 2] for i in range(len(speakers) - 1)]

    cooperative = run("anna-double-charge")
    assert cooperative.metrics.interruptions == 0 and cooperative.end_reason == "agent_ended"


def test_german_persona_gets_german_agent(dataset, backend):
    result = Call(request(dataset, "jonas-de-entwickler"), base_url=backend.base_url).run()
    assert result.transcript[0].text.startswith("Hallo Jonas, hier ist Sam")
    record = backend.history.get(result.conversation_id)
    assert record.client_data["conversation_config_override"]["agent"] == {"language": "de"}
    assert record.contextual_updates and "Webwerk GmbH" in record.contextual_updates[0]


def test_hosted_path_with_fake_key_against_local_backend(dataset, backend, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_fake_key_for_tests_0000000000")
    monkeypatch.setenv("ELEVENLABS_BASE_URL", backend.base_url)
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    result = Call(request(dataset, "anna-double-charge", backend="elevenlabs")).run()
    assert result.success and result.backend == "elevenlabs"
    assert backend.history.get(result.conversation_id).agent_id == "chargeback"


def test_hosted_path_without_key_fails_before_sending(dataset, backend, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_BASE_URL", backend.base_url)
    before = len(backend.history)
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY is not set"):
        Call(request(dataset, "anna-double-charge", backend="elevenlabs")).run()
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_fake")
    with pytest.raises(ConfigError, match="ELEVENLABS_AGENT_ID"):
        Call(request(dataset, "anna-double-charge", backend="elevenlabs")).run()
    assert len(backend.history) == before, "nothing may reach the backend"
