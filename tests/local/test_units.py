"""The local backend's pure parts: the flow engine (moves, repeats, re-prompts, tool results),
silent calls in simulations, and close reasons that fit a close frame."""

from __future__ import annotations

from voicelab.harness.transcript import TranscriptRecorder
from voicelab.local.flow import FlowEngine
from voicelab.spec.models import TranscriptEntry
from voicelab.spec.script import says_goodbye


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


def test_a_close_reason_fits_a_close_frame():
    from voicelab.local.session import close_reason

    long = "Missing required dynamic variables: " + ", ".join(f"größe_{i}" for i in range(40))
    cut = close_reason(long)
    assert len(cut) <= 123 and long.startswith(cut.decode())  # whole characters, never a protocol error
    assert close_reason("Agent not found") == b"Agent not found"


def test_a_full_history_drops_its_oldest_finished_conversations_and_keeps_those_in_progress():
    from voicelab.local.history import ConversationRecord, History

    history = History(limit=3)

    def record(name: str, ended: bool) -> ConversationRecord:
        made = ConversationRecord(conversation_id=name, agent_id="a", agent_name="A", text_only=True,
                                  dynamic_variables={}, client_data={})
        made.ended = 1.0 if ended else None
        return made

    for name, ended in (("live", False), ("old", True), ("older-live", False), ("mid", True), ("new", True)):
        history.add(record(name, ended))
    kept = {name for name in ("live", "old", "older-live", "mid", "new") if history.get(name)}
    assert kept == {"live", "older-live", "new"}  # two finished dropped, oldest first; none in progress
    history.add(record("newest", True))
    assert history.get("new") is None and history.get("newest") and history.get("live")


def test_a_finished_conversation_is_judged_on_the_agents_evaluation_criteria(dataset):
    """A pushed criterion reaches the spec, GET agent and every conversation's analysis; a goal
    outside the condition grammar is unknown, never a guess."""
    from voicelab.local.agent_config import applied
    from voicelab.local.history import ConversationRecord

    pushed = {"platform_settings": {"evaluation": {"criteria": [
        {"id": "polite", "name": "Polite", "type": "prompt", "conversation_goal_prompt": 'The agent says "goodbye".'},
        {"id": "vibes", "name": "Vibes", "type": "prompt", "conversation_goal_prompt": "The caller felt heard."},
        {"id": "", "conversation_goal_prompt": "no id: not kept"}]}}}
    spec = applied(dataset.agents["chargeback"], pushed)
    assert [(c.id, c.conversation_goal_prompt) for c in spec.platform.evaluation_criteria] == [
        ("polite", 'The agent says "goodbye".'), ("vibes", "The caller felt heard.")]
    criteria = [(c.id, c.conversation_goal_prompt) for c in spec.platform.evaluation_criteria]
    record = ConversationRecord(conversation_id="c", agent_id="chargeback", agent_name="Chargeback", text_only=True,
                                dynamic_variables={}, client_data={}, criteria=criteria)
    record.add("agent", "Hello, is this Anna?")
    assert "evaluation_criteria_results" not in record.analysis()  # judged once it has ended
    record.add("agent", "Thank you. Goodbye.")
    record.finish("end_call tool was called.")
    results = record.analysis()["evaluation_criteria_results"]
    assert results["polite"]["result"] == "success" and results["vibes"]["result"] == "unknown"
    assert "cannot judge" in results["vibes"]["rationale"]
    quiet = ConversationRecord(conversation_id="d", agent_id="chargeback", agent_name="Chargeback", text_only=True,
                               dynamic_variables={}, client_data={}, criteria=[("polite", 'The agent says "goodbye".')])
    quiet.add("agent", "Hello?")
    quiet.finish("Client disconnected: 1000")
    assert quiet.analysis()["evaluation_criteria_results"]["polite"]["result"] == "failure"
