"""Callers that sound like people: an agent plays the persona (text and voice bridges), and timed
barge-ins with their stop latency measured against the local backend's injected reaction time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from voicelab.audio.formats import from_pcm16k, to_pcm16k, ulaw_decode, ulaw_encode
from voicelab.harness.call import Call
from voicelab.lab.batch import run_batch
from voicelab.lab.tables import barge_ins_table, calls_table
from voicelab.spec.errors import ConfigError
from voicelab.spec.models import CallerSpec, Interrupt, Persona, ReplyRule
from voicelab.spec.prose import CALLER_AGENT_ID, caller_prompt, parse_caller_prompt
from voicelab.spec.script import PersonaFlow

from ..conftest import AGENTS, PERSONAS

KEY = "sk_hostedtestkey_0123456789abcdef01"
VOICELAB = str(Path(sys.executable).parent / "voicelab")


def with_caller(request, **caller):
    persona = request.persona
    spec = persona.caller.model_copy(update=caller)
    return request.model_copy(update={"persona": persona.model_copy(update={"caller": spec})})


# --------------------------------------------------------------------------- the persona as a prompt


def test_every_bundled_persona_survives_its_prompt(dataset):
    for persona in dataset.personas.values():
        prompt = caller_prompt(persona)
        assert persona.name in prompt and persona.summary in prompt
        assert all(f"- {k}: {v}" in prompt for k, v in persona.variables.items())  # what they know
        back = parse_caller_prompt(prompt, persona.language).caller
        assert back.replies == persona.caller.replies and back.fallback == persona.caller.fallback
        assert back.style == persona.caller.style and back.hang_up_after_turns == persona.caller.hang_up_after_turns


def test_quotes_and_the_word_or_inside_hints_survive():
    tricky = Persona(id="t", name="Zoë \"Z\" O'Neil", summary="Says \"or\" a lot.", agent="a", caller=CallerSpec(
        style="confused", hang_up_after_turns=3, fallback='Pardon "what"?',
        replies=[ReplyRule(when=['say "yes" or "no"', "this or that"], say='I said "yes", or did I?')]))
    back = parse_caller_prompt(caller_prompt(tricky)).caller
    assert back.replies == tricky.caller.replies and back.fallback == 'Pardon "what"?' and back.style == "confused"


def test_the_local_caller_agent_gets_the_gist_where_the_scripted_caller_falls_back(dataset):
    flow = PersonaFlow(dataset.persona("anna-double-charge"))
    garbled = "oh the seas or north star and you see the thing with so"  # pocketsphinx on the greeting
    assert flow.on_agent_turn(garbled).say == ["Yes, this is Anna."]  # the next reply, in order
    assert flow.on_agent_turn(garbled).say == ["Yes, this is Anna."]  # asked again: the same answer
    assert flow.on_agent_turn("oh").say == ["Sorry, could you say that again?"]  # a fragment: ask again
    assert flow.on_agent_turn("is there anything else").say == ["No, that's all, thank you."]  # a hint wins


def test_audio_formats_round_trip():
    tone = (np.sin(np.arange(1600) / 7) * 12000).astype(np.int16)
    again = ulaw_decode(ulaw_encode(tone)).astype(int)
    assert np.max(np.abs(again - tone)) < 12000 * 0.04  # mu-law: a few percent of full scale
    assert len(from_pcm16k(tone.tobytes(), "ulaw_8000")) == 800  # 100 ms at 8 kHz, a byte per sample
    assert len(from_pcm16k(tone.tobytes(), "pcm_24000")) == 4800
    back = np.frombuffer(to_pcm16k(from_pcm16k(tone.tobytes(), "pcm_22050"), "pcm_22050"), np.int16)
    assert abs(len(back) - 1600) <= 1 and np.corrcoef(back[:1500], tone[:1500])[0, 1] > 0.99


# --------------------------------------------------------------------------- agent caller: text


def test_an_agent_plays_the_persona_by_text_to_the_agents_goodbye(backend, dataset):
    result = Call(dataset.request("anna-double-charge", caller="agent"), base_url=backend.base_url).run()
    assert result.caller == "agent" and result.end_reason == "agent_ended" and result.success
    assert result.transcript[-1].text.endswith("Goodbye.")
    assert [e.text for e in result.transcript if e.speaker == "user"] == [
        "Yes, this is Anna.", "Yes, please go ahead with the dispute.", "No, that's all, thank you."]
    # the caller agent's own conversation: its agent turns are the persona's words, its user turns what it heard
    assert result.caller_conversation_id and result.caller_conversation_id != result.conversation_id
    mirror = [(e.speaker, e.text) for e in result.caller_transcript]
    assert ("agent", "Yes, this is Anna.") in mirror and mirror[0] == ("user", result.transcript[0].text)
    record = backend.history.get(result.caller_conversation_id)
    assert record.agent_id == CALLER_AGENT_ID
    sent = record.client_data["conversation_config_override"]["agent"]["prompt"]["prompt"]
    assert sent == caller_prompt(dataset.persona("anna-double-charge"))


def test_the_caller_agent_hanging_up_ends_both_conversations(backend, dataset):
    request = dataset.request("kevin-in-a-hurry", caller="agent")
    result = Call(request, base_url=backend.base_url).run()
    assert result.end_reason == "caller_ended", result.transcript
    # The caller's goodbye is its last word. The agent under test hears it at once and may answer
    # before the hang-up reaches it (its conversation is still open, as on a phone line): such an
    # answer is real and kept, so only agent turns may follow the goodbye (the race behind a flaky
    # "last entry is the goodbye" once seen in CI).
    last_user = max(i for i, e in enumerate(result.transcript) if e.speaker == "user")
    assert "Goodbye" in result.transcript[last_user].text, result.transcript
    assert all(e.speaker == "agent" for e in result.transcript[last_user + 1:])
    for conversation_id in (result.conversation_id, result.caller_conversation_id):
        assert backend.history.get(conversation_id).ended is not None  # both closed


def test_the_time_limit_ends_both_conversations(backend, dataset):
    request = dataset.request("anna-double-charge", caller="agent").model_copy(update={"max_duration_s": 1.0})
    request = with_caller(request, style="silent")  # the caller agent never speaks: only the limit ends it
    result = Call(request, base_url=backend.base_url).run()
    assert result.end_reason == "timeout" and 0.9 < result.duration_seconds < 2.0
    assert [e.speaker for e in result.transcript] == ["agent"]  # the greeting, never answered
    for conversation_id in (result.conversation_id, result.caller_conversation_id):
        assert backend.history.get(conversation_id).ended is not None


def test_a_batch_of_agent_callers_is_stored_with_both_conversations(tmp_path: Path):
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "tomasz-merchant-refunded"],
                        caller="agent", runs_root=str(tmp_path), run_id="ac", progress=False, concurrency=2)
    assert all(r.caller == "agent" and r.success for r in outcome.results), [r.checks for r in outcome.results]
    lines = [json.loads(line) for line in (tmp_path / "ac" / "calls.jsonl").read_text().splitlines()]
    assert all(line["caller_conversation_id"] and line["caller_transcript"] for line in lines)


def test_hosted_caller_agent_needs_its_setting_and_then_works(monkeypatch, local_backend, dataset):
    server = local_backend(require_key=KEY)  # the local backend plays the platform; every agent private
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    monkeypatch.setenv("ELEVENLABS_BASE_URL", server.base_url)
    monkeypatch.setenv("ELEVENLABS_REQUIRES_AUTH", "true")
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    request = dataset.request("anna-double-charge", caller="agent", backend="elevenlabs")
    from voicelab.harness.runners import preflight

    with pytest.raises(ConfigError, match="ELEVENLABS_CALLER_AGENT_ID"):
        preflight([request])
    with pytest.raises(ConfigError, match="ELEVENLABS_CALLER_AGENT_ID"):
        Call(request).run()  # a Call placed directly checks it too, before anything connects
    monkeypatch.setenv("ELEVENLABS_CALLER_AGENT_ID", CALLER_AGENT_ID)
    preflight([request])
    result = Call(request).run()
    assert result.success and result.end_reason == "agent_ended" and result.caller_conversation_id


def test_cli_caller_agent(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "NO_PROXY": "127.0.0.1,localhost", "HOME": str(tmp_path)}
    done = subprocess.run([VOICELAB, "call", "--persona", "anna-double-charge",
                           "--caller", "agent", "--runs", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "(local, agent, text)" in done.stdout and "Verdict: PASS" in done.stdout
    hosted = subprocess.run([VOICELAB, "call", "--persona", "anna-double-charge",
                             "--caller", "agent", "--backend", "elevenlabs"],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
                            env={**env, "ELEVENLABS_API_KEY": "sk_x", "ELEVENLABS_AGENT_ID": "agent_x"})
    assert hosted.returncode == 2 and "Traceback" not in hosted.stderr
    assert "ELEVENLABS_CALLER_AGENT_ID" in hosted.stderr and len(hosted.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- voice: bridge and barge-in


@pytest.mark.slow
@pytest.mark.realtime
def test_voice_agent_caller_and_timed_barge_ins(local_backend, dataset, tmp_path: Path):
    """Three real-time voice calls at once: an agent caller bridged by audio to the agent's
    goodbye; an interruption whose stop latency must match the agent's 300 ms reaction time; and a
    backchannel that an agent with a 600 ms reaction time talks on through."""
    agent = dataset.agents["chargeback"]

    def reacting_in(ms: float):  # the same agent, served with its own barge-in reaction time
        return agent.model_copy(update={"id": f"chargeback-{ms:g}", "platform": agent.platform.model_copy(
            update={"barge_in_ms": ms})})

    variants = {a.id: a for a in (reacting_in(300), reacting_in(600))}
    server = local_backend(agents={**dataset.agents, **variants})

    base = dataset.request("anna-double-charge", mode="voice").model_copy(update={"audio_dir": str(tmp_path)})
    bridged = base.model_copy(update={"caller": "agent", "call_id": "bridged"})
    interrupted = with_caller(base, interrupt=Interrupt(after_ms=800, say="Sorry, one question.", agent_turn=2))
    interrupted = interrupted.model_copy(update={"agent": variants["chargeback-300"], "call_id": "interrupted"})
    backchannel = with_caller(base, interrupt=Interrupt(after_ms=800, say="Uh-huh.", agent_turn=2, backchannel=True))
    backchannel = backchannel.model_copy(update={"agent": variants["chargeback-600"], "call_id": "backchannel"})

    async def place_all():
        return await asyncio.gather(*(Call(r, base_url=server.base_url).arun()
                                      for r in (bridged, interrupted, backchannel)))

    voice, cut, mm = asyncio.run(place_all())

    # the bridge: both sides heard each other through speech recognition, and the agent said goodbye
    assert voice.end_reason == "agent_ended" and voice.success, (
        [(c.name, c.detail) for c in voice.checks if not c.passed],
        [(e.speaker, e.text, e.said) for e in voice.transcript])
    assert voice.metrics.wer is not None and voice.metrics.response_latency_ms
    heard = [e.text for e in voice.caller_transcript if e.speaker == "user"]
    assert heard and all(h != e.text for h, e in zip(heard, voice.transcript, strict=False))  # ASR, not text
    left, right = _channels(voice.audio_path)
    assert _loud_s(left) > 2 and _loud_s(right) > 5  # one stereo recording: caller left, agent right

    # the interruption: stopped 300 ms after the caller's onset, cut turn corrected, then answered
    (barge,) = cut.metrics.barge_ins
    assert barge.stopped and barge.corrected and barge.answered
    assert abs(barge.interruption_ms - 300) <= 30 and abs(barge.audio_stop_ms - 300) <= 30, barge
    turn = [e for e in cut.transcript if e.speaker == "agent"][1]
    assert turn.original_text and len(turn.text) < len(turn.original_text)

    # the backchannel: no interruption, the turn played out whole, and the call went on to succeed
    (back,) = mm.metrics.barge_ins
    assert back.backchannel and not back.stopped and back.interruption_ms is None and not back.corrected
    assert back.audio_stop_ms > 3000 and mm.success and mm.metrics.interruptions == 0

    # and as tables: one row per barge-in; the calls table's stop latency counts only real stops
    rows = barge_ins_table([cut, mm])
    assert rows["stopped"].tolist() == [True, False] and rows["backchannel"].tolist() == [False, True]
    calls = calls_table([voice, cut, mm]).set_index("call_id")
    assert abs(calls.loc["interrupted", "stop_latency_ms"] - 300) <= 30
    assert pd.isna(calls.loc["backchannel", "stop_latency_ms"]) and calls.loc["bridged", "caller_conversation_id"]


def _channels(path: str) -> tuple[np.ndarray, np.ndarray]:
    import wave

    with wave.open(path) as w:
        assert w.getnchannels() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    return data[:, 0], data[:, 1]


def _loud_s(x: np.ndarray) -> float:
    frames = x[: len(x) // 320 * 320].reshape(-1, 320).astype(float)
    return float((np.sqrt((frames ** 2).mean(axis=1)) > 300).sum() * 0.02)
