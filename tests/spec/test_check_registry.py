"""The check registry (voicelab/spec/checks.py): one entry per expectation key, and what follows
from it for a user's own expectations.

- every key of the persona format's `expect:` has exactly one entry (a new field without its
  check cannot land);
- the sentences voicelab sends a platform judge are read back by the local judge with the same
  verdict as voicelab's own checks on the same conversation, for generated expectations and
  transcripts (unicode, quotes, repeats, empty turns);
- no entry's sentence is read by another entry's grammar;
- `agent_says_in_order` agrees with an exhaustive search for an order, and says why it failed.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.spec.checks import (
    DEFAULT_CONDITION,
    EXPECTATIONS,
    REGISTRY,
    Simulation,
    _phrase_pattern,
    checks,
    in_order,
    judge_condition,
    success_conditions,
)
from voicelab.spec.models import Expectations, ExpectedCall, ToolCallRecord, TranscriptEntry

from ..asserts import assert_check

WORDS = ["yes", "no", "Dienstag", "zoë", "歯", "card", "check-up", "o'brien", "\"quoted\"", "a\\b", "🦷", "the"]
phrases = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
turn_texts = st.lists(st.sampled_from(WORDS + [""]), max_size=6).map(" ".join)
TOOLS = ["book_slot", "transfer_to_human", "lookup", "end_call"]
arg_values = st.sampled_from(["+48 601", "Dienstag", "zoë", 'say "hi"', "a\\b", "3 times", "x, y", "歯科"])


@st.composite
def conversations(draw):
    """A simulated conversation (as the local backend keeps it) and who ended it."""
    items = []
    for turn in range(draw(st.integers(0, 6))):
        role = "agent" if turn % 2 == 0 else "user"
        item = {"role": role, "message": draw(turn_texts), "time_in_call_secs": turn}
        if role == "agent" and draw(st.booleans()):
            calls = [{"request_id": f"r{turn}-{k}", "tool_name": draw(st.sampled_from(TOOLS)), "type": "client",
                      "params_as_json": json.dumps({"slot": draw(arg_values)})}
                     for k in range(draw(st.integers(1, 2)))]
            item["tool_calls"] = calls
        items.append(item)
    return items, draw(st.sampled_from(["agent", "caller", "limit"]))


expectations = st.builds(
    Expectations,
    agent_says=st.lists(phrases, max_size=2),
    agent_never_says=st.lists(phrases, max_size=2),
    agent_says_in_order=st.lists(phrases, max_size=3),
    agent_calls=st.lists(st.builds(ExpectedCall, tool=st.sampled_from(TOOLS),
                                   args=st.dictionaries(st.just("slot"), arg_values, max_size=1),
                                   times=st.none() | st.integers(1, 2)), max_size=2),
    agent_never_calls=st.lists(st.sampled_from(TOOLS), max_size=2),
    min_turns=st.none() | st.integers(1, 6),
    ended_by=st.none() | st.sampled_from(["agent", "caller"]),
)


def as_call(items: list[dict], ended_by: str):
    """The same conversation as a call's result records it."""
    transcript = [TranscriptEntry(speaker="agent" if i["role"] == "agent" else "user", text=i["message"],
                                  timestamp=i["time_in_call_secs"]) for i in items]
    tools = [ToolCallRecord(tool=c["tool_name"], type="client", id=c["request_id"],
                            args=json.loads(c["params_as_json"]), at=i["time_in_call_secs"])
             for i in items for c in i.get("tool_calls", [])]
    end = {"agent": "agent_ended", "caller": "caller_ended", "limit": "timeout"}[ended_by]
    return transcript, tools, end


def test_every_expectation_key_has_one_registry_entry():
    assert [entry.key for entry in REGISTRY] == list(EXPECTATIONS)
    assert set(EXPECTATIONS) == set(Expectations.model_fields), "a key of expect: without its check (or the reverse)"


@settings(max_examples=300, deadline=None)
@given(expectations, conversations(), st.booleans())
def test_the_local_judge_reads_the_sentences_sent_to_a_judge_as_voicelab_checks_the_call(expect, conversation,
                                                                                         calls_expected):
    items, ended_by = conversation
    if calls_expected:  # the agent makes the calls it is expected to make (their arguments round-trip)
        items = [*items, {"role": "agent", "message": "", "time_in_call_secs": len(items), "tool_calls": [
            {"request_id": f"e{n}-{k}", "tool_name": call.tool, "type": "client",
             "params_as_json": json.dumps(call.args)}
            for n, call in enumerate(expect.agent_calls) for k in range(call.times or 1)]}]
    transcript, tools, end = as_call(items, ended_by)
    own = checks(expect, transcript, duration_s=1.0, end_reason=end, tool_calls=tools)
    sentences = success_conditions(expect)
    judged = [judge_condition(s, Simulation(items, ended_by)) for s in sentences]
    assert None not in judged, [s for s, j in zip(sentences, judged, strict=True) if j is None]
    if sentences == [DEFAULT_CONDITION]:
        assert own == [] and judged == [(ended_by == "agent", f"ended by the {ended_by}")]
        return
    assert [passed for passed, _ in judged] == [c.passed for c in own]
    assert all(detail for _, detail in judged)


@settings(max_examples=200, deadline=None)
@given(expectations)
def test_no_sentence_is_read_by_another_entrys_grammar(expect):
    for entry in REGISTRY:
        for sentence in entry.conditions(expect):
            readers = [other.key for other in REGISTRY if other.sentence is not None
                       and other.sentence.fullmatch(sentence)]
            assert readers == [entry.key], sentence


def test_a_sentence_outside_the_grammar_is_not_judged():
    sim = Simulation([{"role": "agent", "message": "hello"}], "agent")
    assert judge_condition("The agent is friendly.", sim) is None
    assert judge_condition("The agent calls the tool 9lives.", sim) is None, "not a tool name: not voicelab's"


# ---- agent_says_in_order


def exhaustive_order(turns: list[str], wanted: list[str]) -> bool:
    """Whether some choice of one match per phrase puts each at or after the previous one's end."""
    matches = []
    for phrase in wanted:
        pattern = re.compile(_phrase_pattern(phrase))
        matches.append([(i, start, m.end()) for i, text in enumerate(turns) for start in range(len(text) + 1)
                        if (m := pattern.match(text.lower(), start))])

    def place(k: int, turn: int, at: int) -> bool:
        if k == len(wanted):
            return True
        return any(place(k + 1, i, end) for i, start, end in matches[k] if i > turn or (i == turn and start >= at))

    return place(0, 0, 0)


@settings(max_examples=400, deadline=None)
@given(st.lists(turn_texts, max_size=5), st.lists(st.sampled_from(WORDS[:6]), min_size=1, max_size=4))
def test_in_order_finds_an_order_exactly_when_one_exists(turns, wanted):
    passed, detail = in_order(turns, wanted)
    assert passed == exhaustive_order(turns, wanted), (turns, wanted, detail)
    if passed:
        assert detail.startswith("said in order in agent turn")
    else:
        named = re.match(r'"(.+?)" (never said|came before "(.+)"|not said again after agent turn \d+)$', detail)
        assert named and named.group(1) in wanted, detail


def test_in_order_says_which_phrase_is_out_of_place():
    turns = ["Your amount is 40 euros.", "Can I have your name?", "Thank you."]
    assert in_order(turns, ["your name", "the amount"]) == (False, '"the amount" never said')
    assert in_order(turns, ["your name", "amount"]) == (False, '"amount" came before "your name"')
    assert in_order(turns, ["thank you", "thank you"]) == (False, '"thank you" not said again after agent turn 3')
    assert in_order(turns, ["amount", "name", "thank"]) == (True, "said in order in agent turns 1, 2, 3")
    assert in_order(["yes and yes"], ["yes", "yes"]) == (True, "said in order in agent turns 1, 1")


def test_in_order_is_one_check_named_for_its_key():
    expect = Expectations(agent_says_in_order=["hello", "goodbye"])
    transcript = [TranscriptEntry(speaker="agent", text="goodbye then hello", timestamp=0)]
    (check,) = checks(expect, transcript, duration_s=1, end_reason="agent_ended")
    assert (check.name, check.passed, check.detail) == ("agent_says_in_order", False, '"goodbye" came before "hello"')


# ---- agent_says_in_order on real calls: text, voice, the platform's simulated user, an agent caller

IN_ORDER = ["Anna Kowalska", "Premium Gym Membership", "provisional credit"]  # verify, name, promise
OUT_OF_ORDER = ["provisional credit", "Premium Gym Membership"]


def in_order_request(dataset, phrases: list[str], **how):
    request = dataset.request("anna-double-charge", **how)
    persona = request.persona.model_copy(update={"expect": Expectations(agent_says_in_order=phrases)})
    return request.model_copy(update={"persona": persona, "call_id": f"{request.call_id}-{len(phrases)}"})


def place(dataset, base_url: str, **how):
    """The same persona twice: expecting the agent's real order, and the reverse of two phrases."""
    import asyncio

    from voicelab.harness.runners import place_one

    async def both():
        return await asyncio.gather(*(place_one(in_order_request(dataset, phrases, **how), base_url)
                                      for phrases in (IN_ORDER, OUT_OF_ORDER)))

    return asyncio.run(both())


@pytest.mark.parametrize("caller", ["scripted", "platform", "agent"])
def test_agent_says_in_order_on_text_calls_of_every_caller(backend, dataset, caller):
    good, bad = place(dataset, backend.base_url, caller=caller)
    assert_check(good, "agent_says_in_order", passed=True, detail="said in order in agent turns 1, 2, 3")
    assert_check(bad, "agent_says_in_order", passed=False,
                 detail='"Premium Gym Membership" came before "provisional credit"')
    assert good.success and not bad.success and len(good.checks) == len(bad.checks) == 1
    if caller == "platform":  # the platform's judge got the sentence and the local one read it the same way
        assert good.analysis.call_successful == "success" and bad.analysis.call_successful == "failure"
        assert 'in this order: "provisional credit", then "Premium Gym Membership"' in bad.analysis.rationale


@pytest.mark.slow
@pytest.mark.realtime
def test_agent_says_in_order_on_voice_calls(backend, dataset):
    good, bad = place(dataset, backend.base_url, mode="voice")
    assert good.mode == "voice" and good.success, good.transcript
    assert_check(good, "agent_says_in_order", passed=True)
    assert_check(bad, "agent_says_in_order", passed=False,
                 detail='"Premium Gym Membership" came before "provisional credit"')
