"""Unit tests of the pure parts: the recorder under threads, checks, the flow engine, the caller."""

from __future__ import annotations

import threading

import pytest

from voicelab.harness.transcript import TranscriptRecorder
from voicelab.local.flow import FlowEngine
from voicelab.spec.checks import checks, metrics, percentile, says, success
from voicelab.spec.models import Expectations, TranscriptEntry
from voicelab.spec.script import Action, ScriptedCaller, first_sentence, says_goodbye

from .asserts import assert_check


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


def entry(speaker: str, text: str, t: float, latency: float | None = None) -> TranscriptEntry:
    return TranscriptEntry(speaker=speaker, text=text, timestamp=t, latency_ms=latency)


TRANSCRIPT = [entry("agent", "Hello, is this Anna?", 0), entry("user", "Yes.", 1),
              entry("agent", "Your Premium Gym Membership was charged twice.", 1.3, 300),
              entry("user", "Right.", 2), entry("agent", "Goodbye.", 2.2, 200)]


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


def test_flow_engine_moves_repeats_and_reprompts(dataset):
    agent = dataset.agents["chargeback"]
    persona = dataset.persona("anna-double-charge")
    flow = FlowEngine(agent, persona.variables)
    first = flow.first_message().text
    assert "Anna Kowalska" in first
    assert flow.on_user("Pardon?").text == first
    assert flow.on_user("Hmm.").text.startswith("Just to be sure")
    lookup = flow.on_user("Yes, speaking.")  # the dispute is looked up before it is stated
    assert (lookup.text, lookup.tool, lookup.args) == ("", "lookup_dispute", {"phone_number": "+48601234567"})
    assert "Premium Gym Membership" in flow.on_tool_result(True, {"status": "open"}).text
    assert flow.on_silence().text == "Hello? Are you still there, Anna?"
    record = flow.on_user("No, it's resolved now.")
    assert (record.tool, record.args["decision"]) == ("confirm_dispute", "withdraw")
    reply = flow.on_tool_result(True, '{"recorded": true}')
    assert reply.end_call and flow.outcome == "success"


def test_flow_engine_saves_and_branches_on_tool_results(dataset):
    flow = FlowEngine(dataset.agents["chargeback"], dataset.persona("anna-double-charge").variables)
    flow.first_message()
    flow.on_user("Yes.")
    closed = flow.on_tool_result(True, '{"status": "CLOSED"}')  # a JSON text, any case
    assert "already closed" in closed.text and closed.end_call
    again = FlowEngine(dataset.agents["chargeback"], dataset.persona("anna-double-charge").variables)
    again.first_message()
    again.on_user("Yes.")
    retry = again.on_tool_result(False, "down")
    assert retry.tool == "lookup_dispute" and retry.text == ""  # one more try, silently
    transfer = again.on_tool_result(False, "down")
    assert transfer.tool == "transfer_to_number" and "transferring you" in transfer.text
    screening = FlowEngine(dataset.agents["applicant-screening"], dataset.persona("sofia-books-tuesday").variables)
    screening.step_name = "salary"
    slots = screening.on_user("About 60 thousand.")
    offer = screening.on_tool_result(True, {"slots": "Monday at 9:00"})
    assert slots.tool == "check_interview_slots" and "I can book you Monday at 9:00" in offer.text
    book = screening.on_user("Thursday, please.")  # the intent sets the slot the caller chose
    assert book.tool == "book_interview" and book.args["slot"] == "Thursday at 14:00"


def test_scripted_caller_styles(dataset):
    impatient = ScriptedCaller(dataset.persona("felix-de-keine-zeit"))
    assert impatient.on_agent_turn("Passt es Ihnen gerade?").say == ["Ja, aber schnell bitte."]
    silent = ScriptedCaller(dataset.persona("silent-applicant"))
    assert silent.on_agent_turn("Is now a good time?").say == []
    caller = ScriptedCaller(dataset.persona("anna-double-charge"))
    assert caller.on_agent_turn("Thank you. Goodbye.").say == [], "nobody answers a goodbye"
    assert first_sentence("Yes. Make it quick.") == "Yes."


#: The languages personas are written in that the scripted caller must speak (issue: a Spanish
#: caller said "Thanks, that's all. Goodbye." and did not hear "Adiós").
CALLER_LANGUAGES = ["en", "de", "es", "fr", "it", "pt", "nl", "pl"]


def persona_speaking(dataset, language: str, **caller) -> object:
    persona = dataset.persona("anna-double-charge")
    spec = persona.caller.model_copy(update=caller)
    return persona.model_copy(update={"language": language, "caller": spec})


@pytest.mark.parametrize("language", CALLER_LANGUAGES)
def test_the_callers_own_lines_are_in_the_personas_language(dataset, language):
    from voicelab.spec.script import LINES, says_goodbye

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


def test_a_silent_call_ends_without_the_time_limit_in_a_simulation(dataset):
    """The platform's simulated calls (agent-testing, outbound calls) play the same caller: the
    bundled agents end a silent call themselves, and against an agent that never gives up the
    silent caller hangs up after its turns."""
    from voicelab.local.simulate import simulate

    for persona_id in ("silent-line-chargeback", "silent-applicant", "ute-de-schweigt"):
        persona = dataset.persona(persona_id)
        agent = dataset.agents[persona.agent]
        sim = simulate(agent, persona)
        agent_turns = [t["message"] for t in sim.transcript if t["role"] == "agent" and t["message"]]
        assert sim.ended_by == "agent" and len(agent_turns) == 2 + agent.flow.silence.end_after, agent_turns
        assert not any(t["role"] == "user" for t in sim.transcript)
        patient = agent.model_copy(update={"flow": agent.flow.model_copy(update={
            "silence": agent.flow.silence.model_copy(update={"end_after": None})})})
        sim = simulate(patient, persona)
        assert sim.ended_by == "caller", sim.transcript
        assert len([t for t in sim.transcript if t["role"] == "agent"]) == persona.caller.hang_up_after_turns + 1


def test_the_bundled_agents_end_a_silent_call_politely(dataset):
    """Bundled agents are what users copy: a silent line gets re-prompts, then a goodbye."""
    from voicelab.spec.models import pick_language

    for agent in dataset.agents.values():
        silence = agent.flow.silence
        assert silence.end_after is not None and 1 <= silence.end_after <= 3, agent.id
        for language in sorted({p.language for p in dataset.personas.values() if p.agent == agent.id}):
            goodbye = pick_language(silence.goodbye, language)
            assert goodbye != pick_language(silence.say, language)
            assert says_goodbye(goodbye), (agent.id, language, goodbye)


def voice_side(dataset):
    """A voice call's audio side over a fake audio source (the alignment of what was said and
    what was heard is pure bookkeeping)."""
    from types import SimpleNamespace

    from voicelab.harness.voice_call import VoiceSide

    request = dataset.request("anna-double-charge", mode="voice")
    recorder = TranscriptRecorder()
    audio = SimpleNamespace(interruptions=0, caller_speech_s=0.0, agent_audio_s=0.0)
    return VoiceSide(request, recorder, audio), recorder


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


def test_the_cli_called_in_process_leaves_the_callers_signal_handlers():
    """A notebook or script may call voicelab.surfaces.cli.main.main(); its own Ctrl+C / SIGTERM handling must
    survive (the command's SIGTERM-as-Ctrl+C, and ignoring signals on exit, are the process's)."""
    import signal

    from voicelab.surfaces.cli import main as cli

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    assert cli.main(["personas"]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_close_reason_fits_a_close_frame():
    from voicelab.local.session import close_reason

    long = "Missing required dynamic variables: " + ", ".join(f"größe_{i}" for i in range(40))
    cut = close_reason(long)
    assert len(cut) <= 123 and long.startswith(cut.decode())  # whole characters, never a protocol error
    assert close_reason("Agent not found") == b"Agent not found"


def test_kill_int_stops_a_backgrounded_run_that_inherited_sigint_as_ignored(tmp_path):
    """`voicelab run ... &` from a script starts with SIGINT ignored (a non-interactive shell does
    that to background jobs); `kill -INT` must still stop it as Ctrl+C does: exit 130, the calls
    finished so far stored, the run interrupted and resumable."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from voicelab.lab.store import RunStore

    from .conftest import AGENTS, PERSONAS

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    brisk = ["anna-double-charge", "tomasz-merchant-refunded", "olga-credit-question", "sven-wrong-person"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicelab", "run", "--personas", str(PERSONAS), "--agents", str(AGENTS),
         "--persona", *brisk, "--repeats", "5", "--concurrency", "2", "--latency-ms", "200", "--run-id", "bg",
         "--runs", str(tmp_path), "--no-report"],
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=ignore_sigint)  # noqa: PLW1509 - the point: a child that starts with SIGINT ignored
    calls = tmp_path / "bg" / "calls.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not calls.exists() or len(calls.read_bytes().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "interrupted (Ctrl+C)" in out, out
    stored = [json.loads(line) for line in calls.read_bytes().splitlines() if line.strip()]
    assert 2 <= len({r["call_id"] for r in stored}) < 20
    run = RunStore(tmp_path).open("bg")
    assert run.manifest.state == "interrupted" and run.manifest.sessions[0].stopped_by == "Ctrl+C"
