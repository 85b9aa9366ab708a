"""`transcripts_agree`: the live events, the conversation the backend stored and (voice) voicelab's
recognition of the recorded agent audio tell each agent turn alike; where they do not, the check
names the turn and the account that is the odd one out (voicelab/spec/transcripts.py)."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.harness.call import Call
from voicelab.lab.tables import transcript_disagreements
from voicelab.spec.checks import EXPECTATIONS, checks
from voicelab.spec.errors import DatasetError
from voicelab.spec.models import CallRequest, Expectations, TranscriptEntry, TranscriptsAgree
from voicelab.spec.transcripts import DEFAULT_MAX_WER, align, compare, text_distance, words

from ..properties import TEXTS

# ---------------------------------------------------------------------------- the comparison


def test_three_accounts_that_agree_pass_and_each_kind_of_disagreement_is_named():
    live = ["Hello, this is Nora.", "Your dispute is about the gym.", "Goodbye."]
    assert all(r.agrees for r in compare(live, list(live), ["hello this is nora", "your dispute is the gym", "bye"]))

    missing = compare(live, [live[0], live[2]])
    assert [(r.agent_turn, r.stored_turn, r.problem) for r in missing] == [
        (1, 1, None), (2, None, "missing_stored"), (3, 2, None)], "one missing turn shifts no later pair"
    assert missing[1].odd_one_out == "stored"

    extra = compare(live[:1], [live[0], "An extra stored turn."])
    assert [(r.agent_turn, r.stored_turn, r.problem, r.odd_one_out) for r in extra] == [
        (1, 1, None, None), (None, 2, "missing_live", "live")] and extra[1].label == "stored agent turn 2"

    # the live text and the stored text differ: the audio says which of them the agent spoke
    stored = [live[0], "Your dispute is about the swimming pool.", live[2]]
    heard = [None, "your dispute is about the swimming pool", None]
    (row,) = [r for r in compare(live, stored, heard) if not r.agrees]
    assert (row.agent_turn, row.problem, row.odd_one_out) == (2, "texts_differ", "live")
    assert "the audio agrees with the stored text" in row.detail
    assert compare(live, stored)[1].odd_one_out is None, "without audio nobody can tell"

    # both texts agree, the audio does not: the audio (or its recognition) is the odd one out
    said = compare(live, list(live), [None, "the weather in the mountains is cold and the river is high", ""])
    assert [(r.agent_turn, r.problem, r.odd_one_out) for r in said if not r.agrees] == [
        (2, "audio_differs", "audio"), (3, "audio_differs", "audio")]
    assert said[2].detail == "no speech in its audio" and "WER" in said[1].detail


def test_thresholds_and_the_expectation_shorthands():
    at_limit = compare(["one two three four"], ["one two three five"])[0]
    assert at_limit.text_wer == 0.25 and at_limit.agrees, "at the threshold is within it"
    assert compare(["one two three four"], ["one two three five"], max_wer=0.2)[0].problem == "texts_differ"
    assert compare(["a b c d e"], ["a b c d x"])[0].agrees, "one word in five is within the default 0.25"
    assert compare(["a b"], ["a b"], ["x y z w"], max_audio_wer=2.0)[0].agrees
    assert not compare(["a b"], ["a b"], ["x y z w"])[0].agrees

    assert Expectations(transcripts_agree=True).transcripts_agree == TranscriptsAgree()
    assert Expectations(transcripts_agree=0.1).transcripts_agree.max_wer == 0.1
    assert Expectations(transcripts_agree={"max_audio_wer": 0.6}).transcripts_agree.max_audio_wer == 0.6
    assert Expectations(transcripts_agree=False).transcripts_agree is None
    assert TranscriptsAgree().max_wer == DEFAULT_MAX_WER
    with pytest.raises(ValueError, match="max_wr"):
        Expectations(transcripts_agree={"max_wr": 0.1})
    with pytest.raises(ValueError):
        Expectations(transcripts_agree=-0.1)


def _facts(live: list[str], stored: list[str] | None, audio: list[str | None] | None = None) -> tuple:
    transcript, stored_entries = [], None
    for i, text in enumerate(live):
        transcript += [TranscriptEntry(speaker="agent", text=text, timestamp=2.0 * i,
                                       audio_text=audio[i] if audio else None),
                       TranscriptEntry(speaker="user", text="yes", timestamp=2.0 * i + 1)]
    if stored is not None:
        stored_entries = [TranscriptEntry(speaker="agent", text=t, timestamp=float(i)) for i, t in enumerate(stored)]
    return transcript, stored_entries


def test_the_check_is_one_registry_entry_that_names_the_turn():
    assert "transcripts_agree" in EXPECTATIONS and EXPECTATIONS["transcripts_agree"].sentence is None
    expect = Expectations(transcripts_agree=True)
    live = ["Hello, this is Nora.", "Your dispute is about the gym.", "Goodbye."]
    transcript, stored = _facts(live, [live[0], "We have no record of a dispute.", live[2]])
    (check,) = checks(expect, transcript, duration_s=5, end_reason="agent_ended", stored_transcript=stored)
    assert check.name == "transcripts_agree" and not check.passed
    assert check.detail.startswith("1 of 3 agent turns disagree: agent turn 2: live and stored words differ")

    transcript, stored = _facts(live, live)
    (check,) = checks(expect, transcript, duration_s=5, end_reason="agent_ended", stored_transcript=stored)
    assert check.passed and check.detail == "3 agent turns agree: live events and stored conversation"
    (check,) = checks(expect, transcript, duration_s=5, end_reason="agent_ended")
    assert not check.passed and check.detail.startswith("not compared"), "a check that cannot look does not pass"
    assert checks(Expectations(), transcript, duration_s=5, end_reason="agent_ended", stored_transcript=stored) == []

    # voice: the audio's account counts; a text call ignores any audio_text
    transcript, stored = _facts(live, live, ["hello this is nora", "the weather is cold and the river is high", "bye"])
    (voice,) = checks(expect, transcript, duration_s=5, end_reason="agent_ended", stored_transcript=stored,
                      mode="voice")
    assert not voice.passed and "agent turn 2: its audio says something else" in voice.detail
    assert "[odd one out: audio]" in voice.detail
    (text,) = checks(expect, transcript, duration_s=5, end_reason="agent_ended", stored_transcript=stored)
    assert text.passed


def test_the_table_and_the_report_show_each_turn_that_disagrees(dataset):
    from voicelab.lab.tables import Tables, calls_table, tools_table, turns_table
    from voicelab.report.build import disagreements_html
    from voicelab.spec.checks import finished_result

    live = ["Hello, this is Nora.", "Your dispute is about the <gym> & more.", "Goodbye."]
    transcript, stored = _facts(live, [live[0], live[1]], ["hello this is nora", "", "good bye"])
    request = _asking(dataset.request("anna-double-charge", mode="voice", call_id="anna#1"))
    bad = finished_result(request, transcript, end_reason="agent_ended", duration_s=5,
                          started_at="2026-12-07T00:00:00Z", stored_transcript=stored)
    good = finished_result(request.model_copy(update={"call_id": "anna#2"}), *_facts(live, live)[:1],
                           end_reason="agent_ended", duration_s=5, started_at="2026-12-07T00:00:00Z",
                           stored_transcript=_facts(live, live)[1])
    assert not bad.success and good.checks[-1].passed
    table = transcript_disagreements([bad, good])
    assert [(t.call_id, t.agent_turn, t.problem, t.odd_one_out) for t in table.itertuples()] == [
        ("anna#1", 2, "audio_differs", "audio"), ("anna#1", 3, "missing_stored", "stored")]
    assert len(transcript_disagreements([bad, good], every_turn=True)) == 6
    assert transcript_disagreements([good.model_copy(update={"stored_transcript": None})]).empty

    results = [bad, good]
    tables = Tables(results, {}, calls_table(results), turns_table(results), tools_table(results))
    page = disagreements_html(tables)
    assert 'id="vl-disagreements"' in page and "1 call failed" in page and page.count("<tr>") == 3
    assert "&lt;gym&gt; &amp; more" in page and "the stored conversation" in page and "no speech in its audio" in page
    assert "No call failed" in disagreements_html(Tables([good], {}, calls_table([good]), turns_table([good]),
                                                         tools_table([good])))


# ---------------------------------------------------------------------------- properties

#: Texts a user's agent says: the shared unicode set, generated words, and what pandas makes of
#: a missing text (None, NaN).
MAYBE_TEXT = st.one_of(st.sampled_from(TEXTS), st.text(max_size=30), st.none(), st.just(float("nan")))
WORDY = st.one_of(st.sampled_from([t for t in TEXTS if t.strip() and any(c.isalnum() for c in t)]),
                  st.lists(st.sampled_from(["yes", "no", "charge", "Zoë", "歯", "müller", "49.99"]), min_size=1,
                           max_size=6).map(" ".join))


def _has_words(value: object) -> bool:
    return isinstance(value, str) and bool(words(value))


@settings(max_examples=150, deadline=None)
@given(st.lists(MAYBE_TEXT, max_size=8), st.one_of(st.none(), st.lists(MAYBE_TEXT, max_size=8)),
       st.one_of(st.none(), st.lists(MAYBE_TEXT, max_size=10)))
def test_every_turn_with_words_is_accounted_for_once_in_order(live, stored, audio):
    rows = compare(live, stored, audio)
    live_turns = [r.agent_turn for r in rows if r.agent_turn is not None]
    stored_turns = [r.stored_turn for r in rows if r.stored_turn is not None]
    assert live_turns == [i + 1 for i, t in enumerate(live) if _has_words(t)]
    assert stored_turns == ([j + 1 for j, t in enumerate(stored) if _has_words(t)] if stored is not None else [])
    for r in rows:
        assert (r.problem is None) == (r.odd_one_out is None and r.detail == "agree")
        assert r.text_wer is None or (r.text_wer >= 0 and not math.isnan(r.text_wer))
        assert r.audio_wer is None or r.audio_wer >= 0
        if stored is None:
            assert r.problem in (None, "audio_differs")


@settings(max_examples=150, deadline=None)
@given(st.lists(WORDY, min_size=1, max_size=8), st.data())
def test_identical_accounts_agree_and_a_dropped_turn_is_the_one_missing(live, data):
    assert all(r.agrees for r in compare(live, list(live), list(live)))
    drop = data.draw(st.integers(0, len(live) - 1))
    rows = compare(live, live[:drop] + live[drop + 1:])
    missing = [r for r in rows if not r.agrees]
    assert [r.problem for r in missing] == ["missing_stored"]
    assert text_distance(missing[0].live or "", live[drop]) == 0, "the missing turn says what the dropped one said"
    assert sum(1 for r in rows if r.agrees) == len(live) - 1


@settings(max_examples=100, deadline=None)
@given(st.lists(WORDY, max_size=6), st.lists(WORDY, max_size=6))
def test_alignment_keeps_every_turn_in_order(a, b):
    for x, y in ((a, b), (b, a)):
        pairs = align(x, y)
        assert [i for i, _ in pairs if i is not None] == list(range(len(x)))
        assert [j for _, j in pairs if j is not None] == list(range(len(y)))
        assert all(i is not None or j is not None for i, j in pairs)
    for x, y in zip(a, b, strict=False):
        assert text_distance(x, y) == text_distance(y, x)


# ---------------------------------------------------------------------------- calls on the local backend


def _asking(request: CallRequest, agree: object = True) -> CallRequest:
    persona = request.persona
    expect = persona.expect.model_copy(update={"transcripts_agree": Expectations(transcripts_agree=agree)
                                               .transcripts_agree})
    return request.model_copy(update={"persona": persona.model_copy(update={"expect": expect})})


def test_text_calls_compare_the_events_with_the_stored_conversation(backend, dataset):
    result = Call(_asking(dataset.request("anna-double-charge")), base_url=backend.base_url).run()
    check = next(c for c in result.checks if c.name == "transcripts_agree")
    agent = [e for e in result.transcript if e.speaker == "agent"]
    assert result.success and check.passed, check
    assert check.detail == f"{len(agent)} agent turns agree: live events and stored conversation"
    stored = [e.text for e in result.stored_transcript if e.speaker == "agent"]
    assert stored == [e.text for e in agent] and all(e.audio_text is None for e in agent), "text calls: no audio"
    record = backend.history.get(result.conversation_id)
    assert [t["message"] for t in record.transcript if t["role"] == "agent" and t.get("message")] == stored

    # the same call, its stored record told otherwise: the check names the turn and the odd one out
    told = [e.model_copy(update={"text": "We have no record of your dispute."}) if e.text == agent[1].text else e
            for e in result.stored_transcript]
    (again,) = checks(Expectations(transcripts_agree=True), result.transcript, duration_s=1,
                      end_reason="agent_ended", stored_transcript=told)
    assert not again.passed and "agent turn 2: live and stored words differ" in again.detail
    table = transcript_disagreements([result.model_copy(update={"stored_transcript": told})])
    assert list(table["agent_turn"]) == [2] and table["problem"].iloc[0] == "texts_differ"

    # nothing is fetched for a call that does not compare, unless the request asks for it
    plain = Call(dataset.request("anna-double-charge"), base_url=backend.base_url).run()
    assert plain.stored_transcript is None
    flagged = Call(dataset.request("anna-double-charge", compare_transcripts=True), base_url=backend.base_url).run()
    assert flagged.stored_transcript and not any(c.name == "transcripts_agree" for c in flagged.checks)


def test_a_persona_file_declares_the_check(tmp_path):
    from voicelab.spec.datasets import load_dataset

    from ..conftest import AGENTS, PERSONAS

    text = (PERSONAS / "chargeback.yaml").read_text()
    good = tmp_path / "good.yaml"
    good.write_text(text.replace("      min_turns: 6\n",
                                 "      min_turns: 6\n      transcripts_agree: {max_wer: 0.1}\n", 1))
    persona = load_dataset(good, AGENTS).persona("anna-double-charge")
    assert persona.expect.transcripts_agree == TranscriptsAgree(max_wer=0.1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("      min_turns: 6\n", "      min_turns: 6\n      transcripts_agree: {wer: 0.1}\n", 1))
    with pytest.raises(DatasetError, match="wer"):
        load_dataset(bad, AGENTS)


#: What the agent's audio says in place of its first message: other words, three times as many, so
#: its recognition is far from the text even through pocketsphinx, which mishears espeak-ng's
#: agent voice so badly (WER 0.5-1.0 on a correct turn) that only such a gross change is certain
#: to stand out.
OTHER_WORDS = ("The weather in the mountains is cold today, and the river near the old mill is high after the "
               "rain. The trains are running late this morning, so please take the bus to the station instead, "
               "and bring a warm coat, a hat and an umbrella with you.")


FIRST = "Northbank's card disputes team"
AUDIO_WER = 1.5


@pytest.mark.slow
@pytest.mark.realtime
def test_a_voice_agent_whose_audio_says_something_else_fails_naming_the_turn(dataset, local_backend, monkeypatch,
                                                                             tmp_path):
    """ONE voice call. The local backend's voice says other words for the agent's first message (its
    text event and stored turn are unchanged, and the scripted caller answers the text, so the call
    runs its usual course); every other turn is the normal agent's: they agree, the changed one is
    named, with the audio as the odd one out."""
    import voicelab.local.voice as local_voice

    spoken = local_voice.speak

    def misspeak(text: str, voice: str = "en-us", *args: object) -> bytes:
        return spoken(OTHER_WORDS if FIRST in text else text, voice, *args)

    monkeypatch.setattr(local_voice, "speak", misspeak)  # the backend's agent only: the caller's voice is its own
    backend = local_backend()
    # the persona's own audio threshold: a correct short turn can measure exactly 1.0 through
    # pocketsphinx ("Goodbye" turns did, twice in three calls), the changed one measured 2.1
    request = _asking(dataset.request("anna-double-charge", mode="voice", audio_dir=str(tmp_path)),
                      {"max_audio_wer": AUDIO_WER})
    # two agent turns, not the whole flow: the changed one and an ordinary one, after which the
    # caller hangs up once it has played out (the voice caller waits for the agent's audio to end)
    caller = request.persona.caller.model_copy(update={"hang_up_after_turns": 1})
    request = request.model_copy(update={"persona": request.persona.model_copy(update={"caller": caller})})
    started = time.monotonic()
    result = Call(request, base_url=backend.base_url).run()
    wall = time.monotonic() - started
    agent = [e for e in result.transcript if e.speaker == "agent"]
    changed = next(i for i, e in enumerate(agent, 1) if FIRST in e.text)
    check = next(c for c in result.checks if c.name == "transcripts_agree")
    print(f"voice call {wall:.1f} s; agent turns: " + " | ".join(f"{e.text!r} -> {e.audio_text!r}" for e in agent))

    assert result.status == "completed" and all(e.audio_text is not None for e in agent), agent
    assert not check.passed and f"agent turn {changed}: its audio says something else" in check.detail, check
    assert check.detail.startswith("1 of "), check.detail
    assert [e.text for e in result.stored_transcript if e.speaker == "agent"] == [e.text for e in agent]
    table = transcript_disagreements([result], max_audio_wer=AUDIO_WER)
    assert list(table["agent_turn"]) == [changed] and list(table["odd_one_out"]) == ["audio"]
    assert table["audio_wer"].iloc[0] > AUDIO_WER
