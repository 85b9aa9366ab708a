"""The Call core through the real SDK against the local backend: every bundled persona, the
CallResult contract, one driver behind the sync and async APIs, watching a call, timeouts,
dropped connections, the caller styles, and the hosted path."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from voicelab.harness.call import Call
from voicelab.local import Fault
from voicelab.spec.errors import ConfigError, UsageError


def request(dataset, persona_id: str, **fields):
    return dataset.request(persona_id, **fields)


def limited(req, seconds: float):
    """The same request with a shorter hard time limit (to watch a timeout happen quickly)."""
    return req.model_copy(update={"max_duration_s": seconds})


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
    said = [t["message"] for t in record.transcript if t["message"] is not None]  # not the tool-only items
    assert said == [e["text"] for e in data["transcript"]]


def same_call(a, b) -> tuple:
    """What two placements of one persona must share to count as the same call."""
    return (a.end_reason, a.status, [(e.speaker, e.text) for e in a.transcript], a.success,
            [c.name for c in a.checks if c.passed]) == \
           (b.end_reason, b.status, [(e.speaker, e.text) for e in b.transcript], b.success,
            [c.name for c in b.checks if c.passed])


@pytest.mark.parametrize("persona_id", ["anna-double-charge", "kevin-in-a-hurry", "leo-talks-over"])
def test_run_and_arun_place_the_same_text_call(dataset, local_backend, persona_id):
    backend = local_backend(latency_s=0.1)  # an agent that thinks: a talking-over caller is heard in one turn
    through_sync = Call(request(dataset, persona_id), base_url=backend.base_url).run()
    through_async = asyncio.run(Call(request(dataset, persona_id), base_url=backend.base_url).arun())
    assert same_call(through_sync, through_async), (through_sync.transcript, through_async.transcript)
    for result in (through_sync, through_async):
        assert result.mode == "text" and result.audio_path is None
        assert result.metrics.wer is None and result.metrics.talk_ratio is None
        assert backend.history.get(result.conversation_id).text_only


@pytest.mark.slow
@pytest.mark.realtime
def test_run_and_arun_place_the_same_voice_call(dataset, local_backend, tmp_path):
    """`mode: voice` decides voice on both paths (no text call labelled voice), and the voice
    metrics are there exactly in voice mode."""
    server = local_backend(latency_s=1.5)
    req = request(dataset, "kevin-in-a-hurry", mode="voice")
    # three agent turns and two answers (two latencies), then the caller hangs up once the third
    # has played out (measured: 45 -> 35 s a call): the paths are the point, not Kevin's whole call
    caller = req.persona.caller.model_copy(update={"hang_up_after_turns": 2})
    req = req.model_copy(update={"persona": req.persona.model_copy(update={"caller": caller})})
    sync = Call(req.model_copy(update={"audio_dir": str(tmp_path / "sync")}), base_url=server.base_url)
    sync.start()  # the sync API (run() is start() + wait()) on its own loop thread, while the async one runs
    through_async = asyncio.run(Call(req.model_copy(update={"audio_dir": str(tmp_path / "async")}),
                                     base_url=server.base_url).arun())
    through_sync = sync.wait(timeout=120)
    for result in (through_sync, through_async):
        assert result.mode == "voice" and result.end_reason == "caller_ended", result
        assert not server.history.get(result.conversation_id).text_only, "the backend was asked for audio"
        assert result.audio_path and result.audio_path.startswith(str(tmp_path)) and result.audio_path.endswith(".wav")
        assert result.metrics.talk_ratio and result.metrics.wer is not None
        assert len(result.metrics.response_latency_ms) >= 2
    speakers = [[e.speaker for e in r.transcript] for r in (through_sync, through_async)]
    assert speakers[0] == speakers[1], speakers
    assert [e.text for e in through_sync.transcript if e.speaker == "user"] == \
           [e.text for e in through_async.transcript if e.speaker == "user"], "the persona said the same lines"


def test_a_call_can_be_watched_while_it_runs(dataset, local_backend):
    server = local_backend(latency_s=0.3)
    seen: list[str] = []
    call = Call(request(dataset, "anna-double-charge"), base_url=server.base_url,
                on_entry=lambda e: seen.append(e.text))
    assert not call.done and call.end_reason is None and call.voice_stats is None
    call.start()
    with pytest.raises(TimeoutError):
        call.wait(timeout=0.1)  # the first answer alone takes 0.3 s
    assert not call.done and call.end_reason is None
    result = call.wait(timeout=30)
    assert call.done and call.end_reason == "agent_ended" and call.result is result
    assert [e.text for e in call.transcript] == [e.text for e in result.transcript] == seen


def test_a_person_types_and_hangs_up_through_the_sync_api(dataset, backend):
    call = Call(request(dataset, "anna-double-charge", caller="human"), base_url=backend.base_url)
    assert call.caller is None, "a person plays a human call"
    with pytest.raises(UsageError, match="start it first"):
        call.send("hello")
    call.start()
    for _ in range(500):  # a person reads the greeting, then types
        if any(e.speaker == "agent" for e in call.transcript):
            break
        threading.Event().wait(0.02)
    call.send("Yes, this is Anna.")
    got_answer = threading.Event()
    while not got_answer.wait(0.05):
        if sum(e.speaker == "agent" for e in call.transcript) >= 2:
            got_answer.set()
    call.stop()
    result = call.wait(timeout=10)
    assert result.end_reason == "caller_ended" and result.caller == "human"
    assert [e.speaker for e in result.transcript][:3] == ["agent", "user", "agent"]
    with pytest.raises(UsageError, match="already started"):
        call.start()


def test_injected_latency_shows_in_response_latency(dataset, local_backend):
    """Compared within one run: the same call with and without 250 ms of agent latency."""
    server = local_backend()
    quick = Call(request(dataset, "anna-double-charge"), base_url=server.base_url).run()
    server.latency_s = 0.25
    slow = Call(request(dataset, "anna-double-charge"), base_url=server.base_url).run()
    assert len(slow.metrics.response_latency_ms) == len(quick.metrics.response_latency_ms) == 3
    for with_latency, without in zip(slow.metrics.response_latency_ms, quick.metrics.response_latency_ms,
                                     strict=True):
        assert with_latency - without >= 240, (with_latency, without)


def test_timeout_ends_the_call(dataset, backend):
    result = Call(limited(request(dataset, "silent-line-chargeback"), 4), base_url=backend.base_url).run()
    assert result.end_reason == "timeout" and result.status == "completed"
    assert 3.9 <= result.duration_seconds < 6
    assert [e.speaker for e in result.transcript] == ["agent", "agent"], "first message, then one re-prompt"


def test_dropped_connection_is_a_failed_call_with_partial_transcript(dataset, local_backend):
    server = local_backend()
    server.faults.add(Fault(kind="drop", after_agent_turns=2))
    result = Call(request(dataset, "anna-double-charge"), base_url=server.base_url).run()
    assert result.status == "failed" and result.end_reason == "disconnected"
    assert "1006" in result.error and "dropped" in result.error
    assert [e.speaker for e in result.transcript][:3] == ["agent", "user", "agent"]
    assert not result.success
    assert result.conversation_id is not None


def test_backend_error_close_is_a_failed_call(dataset, local_backend):
    server = local_backend()
    server.faults.add(Fault(kind="close", after_agent_turns=1, close_code=1002, reason="llm_timeout"))
    result = asyncio.run(Call(request(dataset, "anna-double-charge"), base_url=server.base_url).arun())
    assert result.status == "failed" and result.end_reason == "error"
    assert "1002" in result.error and "llm_timeout" in result.error
    assert len(result.transcript) >= 1


def test_unreachable_backend_is_a_failed_call(dataset):
    result = Call(request(dataset, "anna-double-charge"), base_url="http://127.0.0.1:9").run()
    assert result.status == "failed" and result.end_reason == "error" and result.error
    assert result.transcript == []


def test_styles_differ_in_behaviour(dataset, backend):
    def run(pid: str):
        return Call(limited(request(dataset, pid), 12), base_url=backend.base_url).run()

    impatient = run("kevin-in-a-hurry")
    assert impatient.end_reason == "caller_ended" and impatient.metrics.user_turns == 4
    assert "no time" in impatient.transcript[-1].text

    confused = run("maria-confused-subscription")
    user_lines = [e.text for e in confused.transcript if e.speaker == "user"]
    assert user_lines[0] == "Sorry, what do you mean?" and user_lines.count("Sorry, what do you mean?") == 3
    agent_lines = [e.text for e in confused.transcript if e.speaker == "agent"]
    assert agent_lines[0] == agent_lines[1], "the agent repeats itself for a confused caller"

    silent = run("silent-line-chargeback")  # the agent re-prompts twice, then ends the call itself
    assert silent.metrics.user_turns == 0 and silent.end_reason == "agent_ended"
    assert sum("still there" in e.text for e in silent.transcript) == 2

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
