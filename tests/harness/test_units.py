"""The transcript recorder: under threads, a voice caller's turns (what it said, what the agent
heard), backchannels and barge-ins."""

from __future__ import annotations

import threading

import pytest

from voicelab.harness.transcript import TranscriptRecorder
from voicelab.spec.models import TranscriptEntry


def entry(speaker: str, text: str, t: float, latency: float | None = None) -> TranscriptEntry:
    return TranscriptEntry(speaker=speaker, text=text, timestamp=t, latency_ms=latency)


TRANSCRIPT = [entry("agent", "Hello, is this Anna?", 0), entry("user", "Yes.", 1),
              entry("agent", "Your Premium Gym Membership was charged twice.", 1.3, 300),
              entry("user", "Right.", 2), entry("agent", "Goodbye.", 2.2, 200)]


#: The languages personas are written in that the scripted caller must speak (issue: a Spanish
#: caller said "Thanks, that's all. Goodbye." and did not hear "Adiós").
CALLER_LANGUAGES = ["en", "de", "es", "fr", "it", "pt", "nl", "pl"]


def persona_speaking(dataset, language: str, **caller) -> object:
    persona = dataset.persona("anna-double-charge")
    spec = persona.caller.model_copy(update=caller)
    return persona.model_copy(update={"language": language, "caller": spec})


def voice_side(dataset):
    """A voice call's audio side over a fake audio source (the alignment of what was said and
    what was heard is pure bookkeeping)."""
    from types import SimpleNamespace

    from voicelab.harness.voice_call import VoiceSide

    request = dataset.request("anna-double-charge", mode="voice")
    recorder = TranscriptRecorder()
    audio = SimpleNamespace(interruptions=0, caller_speech_s=0.0, agent_audio_s=0.0)
    return VoiceSide(request, recorder, audio), recorder


def test_recorder_is_thread_safe():
    rec = TranscriptRecorder()
    threads, per_thread = 16, 500

    def hammer(n: int) -> None:
        for i in range(per_thread):
            rec.add("agent" if (n + i) % 2 else "user", f"t{n}-{i}")

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    entries = rec.entries()
    assert len(entries) == threads * per_thread
    assert len({e.text for e in entries}) == threads * per_thread, "no entry lost or duplicated"
    stamps = [e.timestamp for e in entries]
    assert stamps == sorted(stamps), "timestamps follow the order of recording"
    for prev, cur in zip(entries, entries[1:], strict=False):
        if cur.speaker == "agent" and prev.speaker == "user":
            assert cur.latency_ms is not None and cur.latency_ms >= 0
        else:
            assert cur.latency_ms is None


def test_a_voice_callers_turn_keeps_what_it_said_and_reads_what_the_agent_heard(dataset):
    side, rec = voice_side(dataset)
    rec.add("agent", "Am I speaking with Anna Kowalska?")
    rec.add("user", "Yes, this is Anna.", said="Yes, this is Anna.")
    side.on_heard("yes this is and")
    rec.add("agent", "Thank you, Anna.")
    rec.add("user", "Thanks, that's all. Goodbye.", said="Thanks, that's all. Goodbye.")  # hung up: never heard
    side.finish()
    user = [e for e in rec.entries() if e.speaker == "user"]
    assert [(e.said, e.text) for e in user] == [("Yes, this is Anna.", "yes this is and"),
                                                ("Thanks, that's all. Goodbye.", "")]
    assert side.stats().wer == pytest.approx(0.25)  # one word of four misheard; the unheard turn is no pair


def test_a_backchannel_the_agent_never_reported_reads_empty_and_the_next_turn_gets_its_words(dataset):
    side, rec = voice_side(dataset)
    rec.add("agent", "Your dispute of the charge for Premium Gym Membership is open.")
    rec.add("user", "Mm-hm.", said="Mm-hm.")  # the agent talked on: no user_transcript for it
    rec.add("user", "Yes, please go ahead with the dispute.", said="Yes, please go ahead with the dispute.")
    side.on_heard("yes please go ahead with that is pure")
    texts = [(e.said, e.text) for e in rec.entries() if e.speaker == "user"]
    assert texts == [("Mm-hm.", ""),
                     ("Yes, please go ahead with the dispute.", "yes please go ahead with that is pure")]


def test_a_reported_backchannel_keeps_the_turn_after_it_waiting(dataset):
    side, rec = voice_side(dataset)
    rec.add("agent", "Your dispute is open.")
    rec.add("user", "Uh-huh.", said="Uh-huh.")
    rec.add("user", "Yes, please go ahead with the dispute.", said="Yes, please go ahead with the dispute.")
    side.on_heard("uh huh")  # the agent stopped for it and heard it first
    user_texts = [e.text for e in rec.entries() if e.speaker == "user"]
    assert user_texts == ["uh huh", "Yes, please go ahead with the dispute."]
    assert rec.awaiting() == [(2, "Yes, please go ahead with the dispute.")]
    side.on_heard("yes please go ahead")
    side.on_heard("with the dispute")  # the rest of the same turn, reported on its own
    assert [e.text for e in rec.entries() if e.speaker == "user"] == ["uh huh", "yes please go ahead with the dispute"]
    rec.add("agent", "Understood.")
    side.on_heard("hello")  # words nobody said after the agent's turn: a turn of their own
    assert [(e.speaker, e.text, e.said) for e in rec.entries()][-1] == ("user", "hello", None)


def test_an_agent_turn_cut_by_a_barge_in_is_marked_interrupted():
    rec = TranscriptRecorder()
    rec.add("agent", "Your dispute of the charge for Premium Gym Membership is open and we will credit you.")
    rec.add("agent", "Anything else?")
    rec.correct("Your dispute of the charge for Premium Gym Membership is open and we will credit you.",
                "Your dispute of the charge")
    cut, whole = rec.entries()
    assert (cut.interrupted, cut.text, cut.original_text) == (True, "Your dispute of the charge",
                                                               "Your dispute of the charge for Premium Gym "
                                                               "Membership is open and we will credit you.")
    assert not whole.interrupted and whole.original_text is None
    assert TranscriptEntry.model_validate_json(cut.model_dump_json()).interrupted  # stored with the result
