"""The pure parts of what a test is: checks named and explained, success, phrase matching,
metrics, and the scripted caller's engine (styles, its own lines per language, goodbyes)."""

from __future__ import annotations

import pytest

from voicelab.harness.transcript import TranscriptRecorder
from voicelab.spec.checks import checks, metrics, percentile, says, success
from voicelab.spec.models import Expectations, TranscriptEntry
from voicelab.spec.script import Action, ScriptedCaller, first_sentence, says_goodbye

from ..asserts import assert_check


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


def test_checks_are_named_and_explained():
    expect = Expectations(agent_says=["premium gym membership", "refund"], agent_never_says=["PIN"],
                          max_duration_s=2, min_turns=4, ended_by="agent")
    result = checks(expect, TRANSCRIPT, duration_s=2.5, end_reason="agent_ended")
    assert_check(result, "agent_says: premium gym membership", passed=True, detail="said in agent turn 2")
    assert_check(result, "agent_says: refund", passed=False, detail_has="not said in any of 3")
    assert_check(result, "agent_never_says: PIN", passed=True)
    assert_check(result, "max_duration_s", passed=False, detail_has="2.5 s")
    assert_check(result, "min_turns", passed=True)
    assert_check(result, "ended_by: agent", passed=True)
    assert not success("completed", result)


def test_success_needs_a_completed_call():
    passed = checks(Expectations(agent_says=["Goodbye"]), TRANSCRIPT, duration_s=1, end_reason="agent_ended")
    assert success("completed", passed)
    assert not success("failed", passed)


@pytest.mark.parametrize(("reason", "ok"), [("agent_ended", True), ("caller_ended", True), ("timeout", False),
                                             ("error", False), ("disconnected", False), ("cancelled", False)])
def test_ended_by_any_means_someone_hung_up(reason, ok):
    (check,) = checks(Expectations(ended_by="any"), TRANSCRIPT, duration_s=1, end_reason=reason)
    assert check.passed is ok


def test_phrase_matching_uses_word_boundaries():
    assert says("Please enter your PIN now", "pin")
    assert not says("We are shopping", "pin")
    assert says("Dispute for Premium Gym Membership.", "Premium Gym Membership")


def test_metrics_and_percentile():
    m = metrics(TRANSCRIPT, interruptions=1)
    assert (m.turns, m.agent_turns, m.user_turns, m.interruptions) == (5, 3, 2, 1)
    assert m.response_latency_ms == [300, 200]
    assert percentile([100, 200, 300, 400], 50) == 250
    assert percentile([1.0], 95) == 1.0


def test_scripted_caller_styles(dataset):
    impatient = ScriptedCaller(dataset.persona("felix-de-keine-zeit"))
    assert impatient.on_agent_turn("Passt es Ihnen gerade?").say == ["Ja, aber schnell bitte."]
    silent = ScriptedCaller(dataset.persona("silent-applicant"))
    assert silent.on_agent_turn("Is now a good time?").say == []
    caller = ScriptedCaller(dataset.persona("anna-double-charge"))
    assert caller.on_agent_turn("Thank you. Goodbye.").say == [], "nobody answers a goodbye"
    assert first_sentence("Yes. Make it quick.") == "Yes."


@pytest.mark.parametrize("language", CALLER_LANGUAGES)
def test_the_callers_own_lines_are_in_the_personas_language(dataset, language):
    from voicelab.spec.script import LINES

    lines = LINES[language]
    done = ScriptedCaller(persona_speaking(dataset, language, hang_up_after_turns=1))
    done.on_agent_turn("Am I speaking with Anna?")
    closing = done.on_agent_turn("Anything else?")
    assert closing.hang_up and closing.say == [lines.bye]
    rushed = ScriptedCaller(persona_speaking(dataset, language, style="impatient", hang_up_after_turns=1))
    rushed.on_agent_turn("Am I speaking with Anna?")
    assert rushed.on_agent_turn("Anything else?").say == [lines.rushed]
    confused = ScriptedCaller(persona_speaking(dataset, language, style="confused"))
    assert confused.on_agent_turn("Am I speaking with Anna?").say == [lines.confused]
    # every closing line is a goodbye another caller recognises, and a line is never English
    # unless the language is
    assert says_goodbye(lines.bye) and says_goodbye(lines.rushed) and not says_goodbye(lines.confused)
    if language != "en":
        assert lines.bye != LINES["en"].bye and lines.confused != LINES["en"].confused


@pytest.mark.parametrize(("language", "agent_turn"), [
    ("es", "Muchas gracias por su tiempo, Anna. Adiós."), ("es", "Gracias. ADIOS."), ("es", "Hasta luego, Anna."),
    ("fr", "Merci beaucoup. Au revoir."), ("it", "Grazie mille. Arrivederci!"), ("pt", "Obrigada. Até logo."),
    ("nl", "Dank u wel. Tot ziens."), ("pl", "Dziękuję bardzo. Do widzenia."), ("de", "Danke. Tschüß!"),
    ("es", "Thank you for your time. Goodbye."),  # an English agent's goodbye, to a Spanish caller
])
def test_the_caller_hears_goodbye_in_its_language_and_lets_the_agent_hang_up(dataset, language, agent_turn):
    caller = ScriptedCaller(persona_speaking(dataset, language))
    action = caller.on_agent_turn(agent_turn)
    assert action.say == [] and not action.hang_up


@pytest.mark.parametrize("agent_turn", ["Is the byelaw clear?", "Did you say goodbyes to the old card?",
                                         "Ciao Anna, am I speaking with you?", "Hola, ¿habla Anna?"])
def test_a_goodbye_is_whole_words_not_part_of_another(dataset, agent_turn):
    caller = ScriptedCaller(persona_speaking(dataset, "es"))
    assert caller.on_agent_turn(agent_turn).say, "not a goodbye: the caller answers"


def test_a_regional_language_speaks_its_language(dataset):
    from voicelab.spec.script import LINES, lines_for

    assert lines_for("pt-BR") == LINES["pt"] and lines_for("ja") == LINES["en"]


def test_a_silent_callers_turns_count_toward_its_hang_up(dataset):
    """A silent caller lets the agent's turns pass, and those are its turns: after
    `hang_up_after_turns` of them it hangs up, without a word (it never ran into the time limit)."""
    persona = dataset.persona("silent-line-chargeback")
    persona = persona.model_copy(update={"caller": persona.caller.model_copy(update={"hang_up_after_turns": 2})})
    caller = ScriptedCaller(persona)
    assert [caller.on_agent_turn("Hello? Are you still there?") for _ in range(2)] == [Action(), Action()]
    assert caller.on_agent_turn("Hello? Are you still there?") == Action(say=[], hang_up=True)
