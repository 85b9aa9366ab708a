"""From real calls to tests: `voicelab import-calls` against the real local backend (a batch is
run, its conversations imported through the SDK, the personas replayed against the same agent and
against a mutant), the rules of an import on hand-made GET bodies, the replay caller, and the
redaction and the replay diff as properties over generated turns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.lab.batch import run_batch
from voicelab.lab.imports import Redactor, ended_by, persona_id, to_persona, write_agent_file
from voicelab.lab.mutate import mutants
from voicelab.lab.store import RunStore
from voicelab.spec.datasets import load_dataset
from voicelab.spec.models import (
    E164_PATTERN,
    CallerSpec,
    EvaluationCriterion,
    Persona,
    Recording,
    ToolCallRecord,
    TranscriptEntry,
)
from voicelab.spec.prose import caller_prompt, parse_caller_prompt, replay_turns, scenario
from voicelab.spec.replay import compare
from voicelab.spec.script import ScriptedCaller
from voicelab.surfaces.cli.main import main

from ..conftest import AGENTS
from ..properties import TEXTS

#: A batch of chargeback calls that covers the shapes of a recording: tool calls and their
#: results, a branch on a result, a silent line, a confused caller, a transfer. (Not the
#: interrupting caller: which of its lines sent in one breath the agent takes before a tool call
#: is a race in text mode, so its replay may legitimately take another path; the diff's handling
#: of lines said in one breath is a property below.)
PERSONAS = ["anna-double-charge", "marek-already-closed", "silent-line-chargeback", "maria-confused-subscription",
            "jan-wants-a-person"]


def _import(url: str, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    code = main(["import-calls", "--local-url", url, "--agent", "chargeback", "--out", str(out), "--agents",
                 str(AGENTS), "--no-progress", "--json", *extra])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return json.loads(printed.out)


def _replay(out: Path, url: str, runs: Path) -> dict:
    outcome = run_batch(str(out), str(AGENTS), repeats=1, concurrency=4, runs_root=str(runs), local_url=url,
                        progress=False)
    return {r.persona_id: r for r in outcome.run.results()}


#: The agent's success evaluation criteria, as a user pushes them (judged by the backend after
#: each call; the imported personas expect the recorded verdicts).
CRITERIA = [{"id": "records_decision", "conversation_goal_prompt": "The agent calls the tool confirm_dispute."},
            {"id": "polite_goodbye", "conversation_goal_prompt": 'The agent says "goodbye".'}]


def _judged(agent):  # noqa: ANN001, ANN202
    return agent.model_copy(update={"platform": agent.platform.model_copy(update={
        "evaluation_criteria": [EvaluationCriterion(**c) for c in CRITERIA]})})


@pytest.mark.slow  # a batch, four imports, two replays
def test_a_batch_imported_replays_and_a_mutant_breaks_the_recorded_path(local_backend, dataset, tmp_path, capsys,
                                                                        monkeypatch):
    server = local_backend(agents={**dataset.agents, "chargeback": _judged(dataset.agents["chargeback"])})
    recorded = run_batch(persona_ids=PERSONAS, repeats=1, concurrency=4, runs_root=str(tmp_path / "runs"),
                         local_url=server.base_url, progress=False)
    originals = {r.persona_id: r for r in recorded.run.results()}
    assert all(r.success for r in originals.values()), [
        (r.persona_id, r.duration_seconds, [(c.name, c.detail) for c in r.checks if not c.passed])
        for r in originals.values() if not r.success]
    out = tmp_path / "imported"

    with monkeypatch.context() as patch:
        patch.setattr("voicelab.lab.imports.PAGE_SIZE", 2)  # three pages: the cursor is followed to the end
        first = _import(server.base_url, out, capsys, "--redact", "phone_number")
    path = out / "chargeback.yaml"
    assert first["listed"] == len(PERSONAS) and len(first["added"][str(path)]) == len(PERSONAS)
    written = path.read_bytes()
    # re-importing the same conversations changes nothing
    again = _import(server.base_url, out, capsys, "--redact", "phone_number")
    assert path.read_bytes() == written and again["added"][str(path)] == [] and len(again["unchanged"]) == len(PERSONAS)

    assert main(["import-calls", "--local-url", server.base_url, "--ids", "conv_nope", "--out", str(out),
                 "--agents", str(AGENTS), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--ids: conversation 'conv_nope' is not on this backend" in err and len(err.splitlines()) == 1, err

    # the filters reach the backend: a time range nothing started in, the platform's verdicts
    assert _import(server.base_url, tmp_path / "none", capsys, "--after", "2099-01-01")["listed"] == 0
    good = _import(server.base_url, tmp_path / "good", capsys, "--successful")["listed"]
    bad = _import(server.base_url, tmp_path / "bad", capsys, "--failed")["listed"]
    assert good >= 1 and good + bad <= len(PERSONAS)

    # the hosted platform's way (API key, ELEVENLABS_BASE_URL, the hosted agent id), answered by the local backend
    monkeypatch.setenv("ELEVENLABS_BASE_URL", server.base_url)
    assert main(["import-calls", "--agent", "chargeback", "--agents", str(AGENTS), "--out", str(tmp_path / "hosted"),
                 "--no-progress"]) == 2
    assert "ELEVENLABS_API_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("ELEVENLABS_API_KEY", "test-key")
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    assert main(["import-calls", "--agent", "chargeback", "--agents", str(AGENTS), "--out", str(tmp_path / "hosted"),
                 "--no-progress", "--redact", "phone_number"]) == 0
    assert "5 new personas" in capsys.readouterr().out
    assert (tmp_path / "hosted" / "chargeback.yaml").read_bytes() == written
    for name in ("ELEVENLABS_BASE_URL", "ELEVENLABS_API_KEY", "ELEVENLABS_AGENT_ID"):
        monkeypatch.delenv(name)

    imported = load_dataset(out, AGENTS).personas
    by_call = {persona_id(r.conversation_id): r for r in originals.values()}
    assert set(imported) == set(by_call)
    text = path.read_text(encoding="utf-8")
    for pid, persona in imported.items():
        original = dataset.persona(by_call[pid].persona_id)
        assert persona.caller.style == "replay" and persona.review and persona.imported is not None
        assert persona.expect.recording is not None and persona.expect.recording.ended_by == "agent"
        # redaction: no real number anywhere, a valid E.164 placeholder in the variables and the tool calls
        assert original.variables["phone_number"] not in text
        placeholder = persona.variables["phone_number"]
        assert E164_PATTERN.match(placeholder) and placeholder != original.variables["phone_number"]
        for call in persona.expect.agent_calls:
            assert call.args.get("phone_number", placeholder) == placeholder
        assert {k: v for k, v in persona.variables.items() if k != "phone_number"} == \
            {k: v for k, v in original.variables.items() if k != "phone_number"}
        # what the caller said, in order (as the backend took it: a line sent as the agent hung up is not in it)
        said = [e.text for e in by_call[pid].transcript if e.speaker == "user"]
        replayed = [t.say for t in persona.caller.turns if t.say]
        assert replayed == said[:len(replayed)] and len(replayed) >= len(said) - 1
        # the platform's verdicts on the recorded call, expected of the replay (and marked for review)
        verdict = persona.expect.platform_verdict
        assert verdict is not None and any("platform_verdict" in note for note in persona.review)
        recorded_verdict = persona.imported.call_successful
        assert verdict.call_successful == (recorded_verdict if recorded_verdict in ("success", "failure") else None)
        had_decision = any(c.tool == "confirm_dispute" for c in by_call[pid].tool_calls)
        assert verdict.evaluation_criteria["records_decision"] == ("success" if had_decision else "failure")
    assert "+48223330000" in text, "the agent's own transfer number is no caller's personal data"
    anna = next(p for pid, p in imported.items() if by_call[pid].persona_id == "anna-double-charge")
    assert [c.tool for c in anna.expect.agent_calls] == ["lookup_dispute", "confirm_dispute"]
    assert anna.tools["lookup_dispute"].result == {"status": "open"}

    # replayed against the same agent: the recorded path, every time
    same = _replay(out, server.base_url, tmp_path / "runs")
    for pid, result in same.items():
        assert result.success, (pid, [(c.name, c.detail) for c in result.checks if not c.passed])
        judged = [c for c in result.checks if c.name.startswith("platform_verdict: ")]
        assert {c.name for c in judged} >= {"platform_verdict: call_successful",
                                            "platform_verdict: criterion records_decision"}, judged
        recording = next(c for c in result.checks if c.name.startswith("recording: "))
        in_one_breath = any(t.after == 0 for t in imported[pid].caller.turns)  # when the agent took each: a race
        assert in_one_breath or recording.detail.startswith("the agent took the recorded path"), recording.detail

    # against a mutant that no longer records the caller's decision: those whose path had it fail
    mutant = next(m for m in mutants(dataset.agents["chargeback"]) if m.id.endswith("no-call-record-keep"))
    broken_server = local_backend(agents={**dataset.agents, "chargeback": _judged(mutant.agent)})
    code = main(["run", "--personas", str(out), "--agents", str(AGENTS), "--local-url", broken_server.base_url,
                 "--runs", str(tmp_path / "runs"), "--run-id", "replay-mutant", "--no-report"])
    summary = capsys.readouterr().out
    assert code == 1, summary  # the gate: a broken recorded path is a failed call
    assert "replays of recorded calls that changed:" in summary and "PATH BROKEN" in summary, summary
    assert re.search(r"- after caller turn \d+ .*: recorded tool call confirm_dispute\(", summary), summary
    replayed = {r.persona_id: r for r in RunStore(str(tmp_path / "runs")).open("replay-mutant").results()}
    for pid, result in replayed.items():
        persona = imported[pid]
        had_it = any(c.tool == "confirm_dispute" for c in persona.expect.agent_calls)
        assert result.success is not had_it, (pid, [(c.name, c.detail) for c in result.checks])
        if had_it:
            check = next(c for c in result.checks if c.name.startswith("recording: "))
            assert not check.passed
            assert re.search(r'after caller turn \d+ \("[^"]+"\): recorded tool call confirm_dispute\(.*\) no longer '
                             r"made", check.detail), check.detail
            # and the backend's own verdict on the replay no longer is the recorded one
            criterion = next(c for c in result.checks if c.name == "platform_verdict: criterion records_decision")
            assert not criterion.passed and criterion.detail.startswith("failure (expected success)"), criterion


def test_import_calls_refuses_bad_input_in_one_line(tmp_path, capsys):
    cases = [
        (["--local-url", "http://127.0.0.1:9", "--after", "yesterday"], "--after 'yesterday' is not a time"),
        (["--local-url", "http://127.0.0.1:9", "--agent", "nope"], "--agent nope: no such agent spec"),
        (["--backend", "local"], "start `voicelab serve`"),
        (["--local-url", "http://127.0.0.1:9", "--after", "2026-12-02", "--before", "2026-12-01"], "is not before"),
    ]
    for extra, said in cases:
        assert main(["import-calls", "--agents", str(AGENTS), "--out", str(tmp_path / "out"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the rules, on GET bodies


def _body(transcript: list[dict], *, reason: str = "end_call tool was called.", variables: dict | None = None,
          conversation_id: str = "conv_test1", analysis: dict | None = None) -> dict:
    return {"conversation_id": conversation_id, "agent_id": "chargeback", "status": "done",
            "metadata": {"start_time_unix_secs": 1_765_000_000, "call_duration_secs": 30,
                         "termination_reason": reason},
            "transcript": transcript,
            "analysis": analysis or {"call_successful": "success", "transcript_summary": "ok"},
            "conversation_initiation_client_data": {"dynamic_variables": variables or {}}}


def _tool(tool: str, args: dict, result: object, request_id: str = "t1") -> list[dict]:
    return [{"role": "agent", "message": None, "time_in_call_secs": 1, "tool_calls": [
        {"request_id": request_id, "tool_name": tool, "params_as_json": json.dumps(args), "type": "client"}]},
            {"role": "agent", "message": None, "time_in_call_secs": 1, "tool_results": [
                {"request_id": request_id, "tool_name": tool, "result_value": json.dumps(result), "is_error": False}]}]


ANNA = {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567",
        "product_name": "Premium Gym Membership", "chargeback_reason": "duplicate charge",
        "system__conversation_id": "conv_test1", "secret__crm_token": "s3cret"}


def test_a_caller_who_hung_up_becomes_a_replay_that_hangs_up_there(dataset):
    body = _body([
        {"role": "agent", "message": "Am I speaking with Anna Kowalska?", "time_in_call_secs": 0},
        {"role": "user", "message": "Yes, this is Anna.", "time_in_call_secs": 2},
        *_tool("lookup_dispute", {"phone_number": "+48601234567"}, {"status": "closed"}),
        {"role": "agent", "message": "That dispute is already closed.", "time_in_call_secs": 3},
        {"role": "agent", "message": "Anything else?", "time_in_call_secs": 4},
        {"role": "user", "message": "No. Goodbye.", "time_in_call_secs": 5},
    ], reason="Client disconnected: 1000", variables=ANNA,
        analysis={"call_successful": "failure", "transcript_summary": "closed",
                  "evaluation_criteria_results": {"polite": {"criteria_id": "polite", "result": "success",
                                                             "rationale": "It was."}},
                  "data_collection_results": {"decision": {"data_collection_id": "decision", "value": "none",
                                                           "rationale": "-"}}})
    persona = Persona.model_validate(to_persona(body, dataset.agents["chargeback"]))
    assert persona.id == "call-conv-test1"
    assert "system__conversation_id" not in persona.variables and "secret__crm_token" not in persona.variables
    assert [(t.say, t.after, t.hang_up) for t in persona.caller.turns] == [
        ("Yes, this is Anna.", 1, False), ("No. Goodbye.", 2, True)]
    assert persona.expect.ended_by == "caller" and persona.expect.recording.ended_by == "caller"
    assert [(c.tool, c.args) for c in persona.expect.agent_calls] == [
        ("lookup_dispute", {"phone_number": "+48601234567"})]
    assert persona.tools["lookup_dispute"].result == {"status": "closed"}  # the world the agent saw
    assert persona.imported.call_successful == "failure"
    assert persona.imported.evaluation_criteria == {"polite": {"result": "success", "rationale": "It was."}}
    assert persona.imported.data_collection["decision"]["value"] == "none"
    notes = " ".join(persona.review)
    assert "agent_calls" in notes and "ended_by" in notes and "judged the recorded call a failure" in notes
    # the replay caller says it as recorded: after one agent turn, then after two more, and hangs up
    caller = ScriptedCaller(persona)
    assert [(a.say, a.hang_up) for a in (caller.on_agent_turn(x) for x in ("hi", "closed", "else?"))] == [
        (["Yes, this is Anna."], False), ([], False), (["No. Goodbye."], True)]


def test_how_a_call_ended_is_read_from_the_record():
    assert ended_by(_body([], reason="end_call tool was called.")) == "agent"
    assert ended_by(_body([], reason="Client disconnected: 1000")) == "caller"
    assert ended_by(_body([], reason="Maximum duration exceeded")) is None
    assert ended_by(_body(_tool("end_call", {}, {"status": "success"}), reason="")) == "agent"


def test_import_appends_only_new_personas_and_keeps_edits(tmp_path, dataset):
    agent = dataset.agents["chargeback"]
    one = to_persona(_body([{"role": "agent", "message": "Hello?", "time_in_call_secs": 0}], variables=ANNA,
                           conversation_id="conv_a"), agent)
    two = to_persona(_body([{"role": "agent", "message": "Hello?", "time_in_call_secs": 0}], variables=ANNA,
                           conversation_id="conv_b"), agent)
    path = tmp_path / "chargeback.yaml"
    assert write_agent_file(path, [one]) == ["call-conv-a"]
    path.write_text(path.read_text().replace("name: Recorded call conv_a", "name: Reviewed by Ola"))
    assert write_agent_file(path, [one, two]) == ["call-conv-b"]
    loaded = load_dataset(path, AGENTS).personas
    assert loaded["call-conv-a"].name == "Reviewed by Ola" and "call-conv-b" in loaded
    before = path.read_bytes()
    assert write_agent_file(path, [two, one]) == [] and path.read_bytes() == before


def test_replay_turns_survive_every_reader_of_a_persona_in_words(dataset):
    persona = Persona(id="r", name="Rita Replay", summary="s", agent="chargeback", caller=CallerSpec(
        style="replay", hang_up_after_turns=3, turns=[{"say": 'Yes, "Rita" here.'}, {"say": "and more", "after": 0},
                                                      {"after": 2, "hang_up": True}]))
    assert parse_caller_prompt(caller_prompt(persona)).caller.turns == persona.caller.turns  # caller: agent
    assert replay_turns(scenario(persona)) == persona.caller.turns  # the platform's simulated user
    with pytest.raises(ValueError, match="style: replay"):
        CallerSpec(style="cooperative", turns=[{"say": "hi"}])


# --------------------------------------------------------------------------- properties

PHONES = st.from_regex(r"\+[1-9][0-9]{8,12}", fullmatch=True)
WORDS = st.sampled_from([t for t in TEXTS if t] + ["my number is", "call me on", "ok", "yes; no"])


@settings(max_examples=60, deadline=None)
@given(st.lists(PHONES, min_size=1, max_size=4), st.lists(st.tuples(WORDS, st.integers(0, 3)), max_size=6))
def test_redaction_is_consistent_and_leaves_nothing_behind(phones, turns):
    """The same number gets the same placeholder in every text; different numbers different ones;
    no number is left; every placeholder is still E.164; redacting again changes nothing."""
    texts = [f"{words} {phones[i % len(phones)]}." for words, i in turns]
    redactor = Redactor(["phone_number"])
    redactor.learn_from({"phone_number": phones[0]}, texts)
    out = [redactor.text(t) for t in texts]
    for phone in set(phones) & {phones[i % len(phones)] for _, i in turns} | {phones[0]}:
        assert all(phone not in t for t in out) and redactor.text(phone) == redactor.values[phone]
        assert E164_PATTERN.match(redactor.values[phone])
    assert len(set(redactor.values.values())) == len(redactor.values)
    for (_, i), text in zip(turns, out, strict=True):
        assert redactor.values[phones[i % len(phones)]] in text
    assert [redactor.text(t) for t in out] == out


TOOLS = st.sampled_from(["lookup_dispute", "confirm_dispute", "transfer_to_number"])
STEP = st.one_of(st.builds(lambda t: {"agent": t}, WORDS), st.builds(lambda t: {"caller": t}, WORDS),
                 st.builds(lambda t, v: {"tool": t, "args": {"decision": v}}, TOOLS, st.sampled_from(["keep", "no"])))


def _as_call(steps: list[dict]) -> tuple[list[TranscriptEntry], list[ToolCallRecord]]:
    """A call that does exactly what the steps recorded (as the replay's transcript has it)."""
    transcript, calls = [], []
    for step in steps:
        if "tool" in step:
            calls.append(ToolCallRecord(tool=step["tool"], type="client", args=step["args"], at=0.0,
                                        turn=len(transcript)))
        else:
            transcript.append(TranscriptEntry(speaker="agent" if "agent" in step else "user",
                                              text=step.get("agent") or step["caller"],
                                              timestamp=float(len(transcript))))
    return transcript, calls


@settings(max_examples=80, deadline=None)
@given(st.lists(STEP, max_size=12), st.data())
def test_the_diff_finds_nothing_on_the_same_path_and_names_a_lost_tool_call(steps, data):
    recording = Recording(conversation_id="conv_x", steps=steps, ended_by="agent")
    transcript, calls = _as_call(steps)
    assert compare(recording, transcript, calls, "agent_ended").same
    assert compare(recording, transcript, calls, "caller_ended").broken  # the recorded end is not reached
    if calls:
        lost = data.draw(st.integers(0, len(calls) - 1))
        gone = calls[lost]
        kept = calls[:lost] + calls[lost + 1:]
        diff = compare(recording, transcript, kept, "agent_ended")
        assert diff.detail(0).split("; ") == diff.broken + diff.changed  # the report and CLI split on it
        still_made = any(c.tool == gone.tool and c.args == gone.args for c in kept)
        if not still_made:
            assert any(f"recorded tool call {gone.tool}" in line and "no longer made" in line for line in diff.broken)
            where = "before the caller's first turn" if not any(
                e.speaker == "user" for e in transcript[:gone.turn]) else "after caller turn"
            assert any(where in line for line in diff.broken), diff.broken
    callers = [e for e in transcript if e.speaker == "user"]
    if callers:  # the call ends before the caller's last turn: named, and it fails
        cut = transcript[:transcript.index(callers[-1])]
        diff = compare(recording, cut, [c for c in calls if (c.turn or 0) <= len(cut)], "agent_ended")
        assert any(f"before caller turn {len(callers)} of the recording's {len(callers)}" in line
                   for line in diff.broken), diff.broken


def test_an_imported_file_is_a_persona_file(tmp_path, dataset):
    body = _body([{"role": "agent", "message": "Hello Anna, is anna@example.org still your address?",
                   "time_in_call_secs": 0},
                  {"role": "user", "message": "No, write to a.k@mail.example.com or call +48601234567.",
                   "time_in_call_secs": 1}],
                 variables={**ANNA, "email": "anna@example.org"})
    path = tmp_path / "chargeback.yaml"
    redactor = Redactor(["phone_number", "email", "first_name"])
    write_agent_file(path, [to_persona(body, dataset.agents["chargeback"], redactor)])
    text = path.read_text(encoding="utf-8")
    (persona,) = yaml.safe_load(text)["personas"]
    assert persona["variables"]["first_name"] == "[first_name 1]" and "Anna" not in text
    assert persona["variables"]["email"] == "redacted-1@example.com"
    assert persona["variables"]["phone_number"] == "+15550100001"
    steps = persona["expect"]["recording"]["steps"]
    assert steps[0]["agent"] == "Hello [first_name 1], is redacted-1@example.com still your address?"
    assert steps[1]["caller"] == persona["caller"]["turns"][0]["say"] == \
        "No, write to redacted-2@example.com or call +15550100001."
    assert not any(v in text for v in ("anna@example.org", "a.k@mail.example.com", "+48601234567"))
    assert load_dataset(path, AGENTS).personas["call-conv-test1"].imported.conversation_id == "conv_test1"


def test_lines_said_in_one_breath_are_one_cut_and_a_moved_call_is_reported_not_failed():
    """The backend's history puts a tool call between two lines sent at once, the caller's
    transcript after both: the same path. A call made after a later caller turn is `moved`."""
    recording = Recording(steps=[{"agent": "Hello?"}, {"caller": "Yes."}, {"tool": "lookup_dispute"},
                                 {"caller": "And dispute it."}, {"agent": "Done."}, {"caller": "Bye."},
                                 {"agent": "Goodbye."}], ended_by="agent")
    said = ["Hello?", "Yes.", "And dispute it.", "Done.", "Bye.", "Goodbye."]
    transcript = [TranscriptEntry(speaker="user" if t in ("Yes.", "And dispute it.", "Bye.") else "agent", text=t,
                                  timestamp=float(i)) for i, t in enumerate(said)]
    at_once = [ToolCallRecord(tool="lookup_dispute", type="client", at=2.5, turn=3)]
    assert compare(recording, transcript, at_once, "agent_ended").same
    later = [ToolCallRecord(tool="lookup_dispute", type="client", at=4.5, turn=5)]
    diff = compare(recording, transcript, later, "agent_ended")
    assert not diff.broken and diff.changed == [
        'after caller turn 2 ("And dispute it."): lookup_dispute moved: now made after caller turn 3 ("Bye.")']
    diff = compare(recording, transcript, [], "caller_ended")
    assert diff.broken == [
        'after caller turn 2 ("And dispute it."): recorded tool call lookup_dispute no longer made',
        'recorded end not reached: the agent ended the recorded call after caller turn 3 ("Bye."), and now the '
        "caller ended it"]
