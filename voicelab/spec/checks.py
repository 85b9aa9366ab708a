"""Expectations -> named checks -> success, and a call's metrics. Pure functions of a result.

A call succeeds only when it completed and every check passed, so "no expectations" never hides
a broken call.

THE CHECK REGISTRY (`REGISTRY`): each expectation key of the persona format (`expect.<key>`) is
one `Expectation` entry holding everything about it:

(a) `evaluate`: its named checks on a finished call (transcript, duration, end reason, tool
    calls); `checks()` is every entry's checks, in registry order;
(b) `conditions`: the sentences that tell a platform judge or simulated user what success means
    (agent-testing's `success_conditions`, written by `success_conditions()`); none for a key
    only voicelab checks;
(c) `sentence` + `judge`: the grammar of those sentences (a full match) and how a local
    simulation judges one (the local backend's agent-testing, `judge_condition()`), so what
    voicelab sends the platform's judge is really read back offline.

A new check is one entry here, its field in `models.Expectations` and its line in
docs/formats.md. The entries' sentences never match each other's grammar (tests/test_check_registry.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicelab.spec.models import (
    Analysis,
    CallRequest,
    CallResult,
    Check,
    EndReason,
    Expectations,
    ExpectedCall,
    Metrics,
    ToolCallRecord,
    TranscriptEntry,
    VoiceStats,
)
from voicelab.spec.replay import compare as compare_replay
from voicelab.spec.tool_calls import as_records, from_history
from voicelab.spec.transcripts import compare as compare_transcripts

#: `any` means the call ended properly (someone hung up), not by timeout or error.
ENDED_BY = {"agent": {"agent_ended"}, "caller": {"caller_ended"}, "any": {"agent_ended", "caller_ended"}}


def _phrase_pattern(phrase: str) -> str:
    """The regex of a phrase in lowercased text: its words whole (word boundaries where it
    starts or ends with a letter or digit)."""
    pattern = re.escape(phrase.lower())
    if phrase[:1].isalnum():
        pattern = r"\b" + pattern
    if phrase[-1:].isalnum():
        pattern += r"\b"
    return pattern


def says(text: str, phrase: str) -> bool:
    """Case-insensitive phrase match on word boundaries, so "PIN" does not match "shopping"."""
    return re.search(_phrase_pattern(phrase), text.lower()) is not None


def in_order(agent_text: list[str], phrases: list[str]) -> tuple[bool, str]:
    """Whether the agent turns `agent_text` say `phrases` in this order, and why (the detail of
    the `agent_says_in_order` check and the local judge's rationale).

    Each phrase matches as `says` does (case-insensitive, whole words) and must start at or after
    the end of the previous phrase's match: in a later agent turn, or later in the same turn (so
    two phrases in one turn are in order when the first comes first in its text, and a phrase
    listed twice must be said twice). Each phrase takes its earliest such match, so the order is
    found whenever one exists. On failure the detail names the first phrase that cannot be
    placed: `"X" never said` (in no agent turn), `"X" not said again after agent turn N` (X is
    listed twice in a row), or `"X" came before "W"` (X is said, but only before the phrase W
    listed just before it)."""
    lowered = [text.lower() for text in agent_text]
    turn, at, turns = 0, 0, []
    for k, phrase in enumerate(phrases):
        pattern = re.compile(_phrase_pattern(phrase))
        hit = next(((i, m.end()) for i in range(turn, len(lowered))
                    if (m := pattern.search(lowered[i], at if i == turn else 0))), None)
        if hit is None:
            if not any(pattern.search(text) for text in lowered):
                return False, f'"{phrase}" never said'
            before = phrases[k - 1]
            if before.lower() == phrase.lower():
                return False, f'"{phrase}" not said again after agent turn {turn + 1}'
            return False, f'"{phrase}" came before "{before}"'
        turn, at = hit
        turns.append(turn + 1)
    return True, f"said in order in agent turn{'s' if len(turns) > 1 else ''} {', '.join(map(str, turns))}"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (like numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def metrics(transcript: list[TranscriptEntry], interruptions: int = 0) -> Metrics:
    agent = [t for t in transcript if t.speaker == "agent"]
    return Metrics(
        turns=len(transcript),
        agent_turns=len(agent),
        user_turns=len(transcript) - len(agent),
        response_latency_ms=[t.latency_ms for t in agent if t.latency_ms is not None],
        interruptions=interruptions,
    )


def _matches(expected: Any, got: Any) -> bool:
    """Expected argument values: strings compared case-insensitively, others equal."""
    if isinstance(expected, str) and isinstance(got, str):
        return expected.strip().lower() == got.strip().lower()
    return expected == got


# --------------------------------------------------------------------------- the check registry


@dataclass(frozen=True)
class CallFacts:
    """What a check sees of a finished call."""

    transcript: list[TranscriptEntry]
    duration_s: float
    end_reason: EndReason
    tool_calls: list[ToolCallRecord]
    #: The backend's stored conversation (None: not fetched) and the call's mode, for
    #: `transcripts_agree` (the agent turns' `audio_text` carry the audio's account).
    stored: list[TranscriptEntry] | None = None
    mode: str = "text"
    #: The backend's analysis of the call (None: not fetched), for `platform_verdict`.
    analysis: Analysis | None = None

    @property
    def agent_text(self) -> list[str]:
        return [t.text for t in self.transcript if t.speaker == "agent"]


@dataclass(frozen=True)
class Simulation:
    """What a local simulation's judge sees: the simulated transcript as the platform keeps it
    (role, message, tool call items) and who ended it (agent | caller | limit)."""

    transcript: list[dict]
    ended_by: str

    @property
    def agent_turns(self) -> list[str]:
        """Every agent item's words; a tool-only item counts as a turn without words."""
        return [str(t.get("message") or "") for t in self.transcript if t.get("role") == "agent"]

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """The simulation's tool calls, as a call's result records them."""
        return as_records(from_history(self.transcript))


#: A local judge's verdict on one sentence: met or not, and why. (A judge answers None for a
#: sentence its grammar matched but whose parts make no sense, e.g. a tool name that is none.)
Judged = tuple[bool, str]


def _no_conditions(expect: Expectations) -> list[str]:
    return []


@dataclass(frozen=True)
class Expectation:
    """One expectation key (`expect.<key>`): its checks, its sentences for a judge, and how a
    local simulation judges those sentences. See the module docstring."""

    key: str
    #: (a) its named checks on a finished call (none when the persona does not set the key)
    evaluate: Callable[[Expectations, CallFacts], list[Check]]
    #: (b) the sentences telling a platform judge what success means (none: voicelab checks it alone)
    conditions: Callable[[Expectations], list[str]] = _no_conditions
    #: (c) the grammar of those sentences (matched in full) ...
    sentence: re.Pattern[str] | None = None
    #: ... and the verdict of a local simulation on one that matched
    judge: Callable[[re.Match[str], Simulation], Judged | None] | None = None


def _first_turn(agent_text: list[str], phrase: str) -> int | None:
    return next((i for i, text in enumerate(agent_text) if says(text, phrase)), None)


# ---- agent_says: each phrase in some agent turn


def _said(hit: int | None, turns: int) -> str:
    return f"said in agent turn {hit + 1}" if hit is not None else f"not said in any of {turns} agent turns"


def _says_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    agent_text = call.agent_text
    out = []
    for phrase in expect.agent_says:
        hit = _first_turn(agent_text, phrase)
        out.append(Check(name=f"agent_says: {phrase}", passed=hit is not None, detail=_said(hit, len(agent_text))))
    return out


def _says_judge(m: re.Match[str], sim: Simulation) -> Judged:
    agent = sim.agent_turns
    hit = _first_turn(agent, m.group(1))
    return hit is not None, _said(hit, len(agent))


# ---- agent_says_in_order: the phrases in this order (see `in_order`)

_QUOTED = r'"(?:[^"\\]|\\.)*"'


def _in_order_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    if not expect.agent_says_in_order:
        return []
    passed, detail = in_order(call.agent_text, expect.agent_says_in_order)
    return [Check(name="agent_says_in_order", passed=passed, detail=detail)]


def _in_order_conditions(expect: Expectations) -> list[str]:
    if not expect.agent_says_in_order:
        return []
    quoted = ", then ".join(json.dumps(p, ensure_ascii=False) for p in expect.agent_says_in_order)
    return [f"The agent says these phrases in this order: {quoted}."]


def _in_order_judge(m: re.Match[str], sim: Simulation) -> Judged | None:
    try:
        phrases = [json.loads(quoted) for quoted in re.findall(_QUOTED, m.group(1))]
    except ValueError:  # an escape JSON does not know: not a sentence voicelab writes
        return None
    return in_order(sim.agent_turns, phrases)


# ---- agent_never_says: no phrase in any agent turn


def _never_said(hit: int | None) -> str:
    return "never said" if hit is None else f"said in agent turn {hit + 1}"


def _never_says_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    agent_text = call.agent_text
    out = []
    for phrase in expect.agent_never_says:
        hit = _first_turn(agent_text, phrase)
        out.append(Check(name=f"agent_never_says: {phrase}", passed=hit is None, detail=_never_said(hit)))
    return out


def _never_says_judge(m: re.Match[str], sim: Simulation) -> Judged:
    hit = _first_turn(sim.agent_turns, m.group(1))
    return hit is None, _never_said(hit)


# ---- max_duration_s, max_latency_ms: voicelab's own measurements, no sentence


def _duration_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    if expect.max_duration_s is None:
        return []
    return [Check(name="max_duration_s", passed=call.duration_s <= expect.max_duration_s,
                  detail=f"{call.duration_s:.1f} s (limit {expect.max_duration_s:g} s)")]


def _latency_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    if expect.max_latency_ms is None:
        return []
    answers = [(i, t.latency_ms) for i, t in enumerate(call.transcript, 1) if t.latency_ms is not None]
    slowest = max(answers, key=lambda a: a[1], default=None)
    return [Check(name="max_latency_ms", passed=slowest is None or slowest[1] <= expect.max_latency_ms,
                  detail=f"slowest answer {slowest[1]:.0f} ms in turn {slowest[0]} (limit "
                         f"{expect.max_latency_ms:g} ms)" if slowest else "no answer was timed")]


# ---- min_turns


def _turns_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    if expect.min_turns is None:
        return []
    return [Check(name="min_turns", passed=len(call.transcript) >= expect.min_turns,
                  detail=f"{len(call.transcript)} turns (at least {expect.min_turns})")]


def _turns_conditions(expect: Expectations) -> list[str]:
    return [f"The conversation has at least {expect.min_turns} turns."] if expect.min_turns else []


def _turns_judge(m: re.Match[str], sim: Simulation) -> Judged:
    turns = sum(1 for t in sim.transcript if t.get("message") is not None)  # not tool-only items
    return turns >= int(m.group(1)), f"{turns} turns"


# ---- ended_by


def _ended_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    if expect.ended_by is None:
        return []
    return [Check(name=f"ended_by: {expect.ended_by}", passed=call.end_reason in ENDED_BY[expect.ended_by],
                  detail=f"end reason: {call.end_reason}")]


def _ended_conditions(expect: Expectations) -> list[str]:
    if expect.ended_by in ("agent", "caller"):
        return [f"The {'agent' if expect.ended_by == 'agent' else 'caller'} ends the call."]
    return []


def _ended_judge(m: re.Match[str], sim: Simulation) -> Judged:
    return sim.ended_by == m.group(1), f"ended by the {sim.ended_by}"


# ---- agent_calls: the tool, with at least these arguments (exactly `times` calls if set)

#: An argument in a tool sentence: name="value".
_ARG = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _calls_checks(expect: Expectations, calls: list[ToolCallRecord]) -> list[Check]:
    out: list[Check] = []
    for wanted in expect.agent_calls:
        args = ", ".join(f"{k}={v}" for k, v in wanted.args.items())
        name = f"agent_calls: {wanted.tool}" + (f"({args})" if args else "") + (
            f" x{wanted.times}" if wanted.times else "")
        same_tool = [c for c in calls if c.tool == wanted.tool]
        hits = [c for c in same_tool if all(k in c.args and _matches(v, c.args[k]) for k, v in wanted.args.items())]
        if wanted.times is not None and hits and len(hits) != wanted.times:
            others = [c for c in same_tool if c not in hits]
            detail = (f"{wanted.tool} called {len(hits)} times with these arguments, expected {wanted.times}"
                      + ("; other calls: " + "; ".join(", ".join(f"{k}={v}" for k, v in c.args.items())
                                                       for c in others) if others else ""))
            out.append(Check(name=name, passed=False, detail=detail))
            continue
        if hits:
            first = hits[0]
            got = ", ".join(f"{k}={v}" for k, v in first.args.items())
            detail = (f"{wanted.tool} called {'once' if len(hits) == 1 else f'{len(hits)} times'} with {got} "
                      f"at {first.at:.1f} s")
        elif same_tool:
            detail = f"{wanted.tool} called, but with " + "; ".join(
                ", ".join(f"{k}={v}" for k, v in c.args.items()) or "no arguments" for c in same_tool)
        else:
            called = ", ".join(sorted({c.tool for c in calls})) or "none"
            detail = f"{wanted.tool} never called (tools called: {called})"
        out.append(Check(name=name, passed=bool(hits), detail=detail))
    return out


def _calls_conditions(expect: Expectations) -> list[str]:
    out = []
    for call in expect.agent_calls:
        args = ", ".join(f"{k}={json.dumps(str(v), ensure_ascii=False)}" for k, v in call.args.items())
        times = f" {call.times} times" if call.times else ""
        out.append(f"The agent calls the tool {call.tool}" + (f" with {args}" if args else "") + f"{times}.")
    return out


def _calls_judge(m: re.Match[str], sim: Simulation) -> Judged | None:
    try:  # the values are JSON strings (quotes and backslashes escaped)
        args = {name: json.loads(f'"{value}"') for name, value in _ARG.findall(m.group(2) or "")}
        wanted = ExpectedCall(tool=m.group(1), args=args,
                              times=int(m.group(3)) if m.group(3) else None)
    except ValueError:  # not a tool name, 0 times or a value JSON cannot read: not a sentence voicelab writes
        return None
    (check,) = _calls_checks(Expectations(agent_calls=[wanted]), sim.tool_calls)
    return check.passed, check.detail


# ---- agent_never_calls


def _never_calls_checks(expect: Expectations, calls: list[ToolCallRecord]) -> list[Check]:
    out = []
    for tool in expect.agent_never_calls:
        hits = [c for c in calls if c.tool == tool]
        out.append(Check(name=f"agent_never_calls: {tool}", passed=not hits,
                         detail="never called" if not hits else f"called at {hits[0].at:.1f} s"))
    return out


def _never_calls_conditions(expect: Expectations) -> list[str]:
    return [f"The agent never calls the tool {tool}." for tool in expect.agent_never_calls]


def _never_calls_judge(m: re.Match[str], sim: Simulation) -> Judged | None:
    try:
        expect = Expectations(agent_never_calls=[m.group(1)])  # arguments and times are read, not judged
    except ValueError:  # not a tool name
        return None
    (check,) = _never_calls_checks(expect, sim.tool_calls)
    return check.passed, check.detail


# ---- recording: a replay against the call it was recorded from (voicelab/spec/replay.py)


def _recording_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    recording = expect.recording
    if recording is None:
        return []
    diff = compare_replay(recording, call.transcript, call.tool_calls, call.end_reason)
    turns = sum(1 for step in recording.steps if step.caller is not None)
    return [Check(name=f"recording: {recording.conversation_id or 'replay'}", passed=not diff.broken,
                  detail=diff.detail(turns))]


# ---- transcripts_agree: live events, stored conversation and (voice) recorded audio agree per turn


def _agree_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    """One check: every agent turn told alike by the accounts voicelab holds (see
    voicelab/spec/transcripts.py); the detail names each turn that is not, and which account is
    the odd one out. Without the stored conversation nothing can be compared: that fails too,
    because a check that cannot look must not pass."""
    spec = expect.transcripts_agree
    if spec is None:
        return []
    name = "transcripts_agree"
    if call.stored is None:
        return [Check(name=name, passed=False, detail="not compared: the backend's stored conversation was not "
                      "fetched (no conversation id, the request failed, or a caller whose live events voicelab "
                      "does not see: platform, phone)")]
    agent = [t for t in call.transcript if t.speaker == "agent"]
    audio = [t.audio_text for t in agent] if call.mode == "voice" else None
    rows = compare_transcripts([t.text for t in agent], [t.text for t in call.stored if t.speaker == "agent"],
                               audio, max_wer=spec.max_wer, max_audio_wer=spec.max_audio_wer)
    bad = [r for r in rows if not r.agrees]
    if bad:
        shown = "; ".join(f"{r.label}: {r.detail}" + (f" [odd one out: {r.odd_one_out}]" if r.odd_one_out else "")
                          for r in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        return [Check(name=name, passed=False, detail=f"{len(bad)} of {len(rows)} agent turns disagree: {shown}{more}")]
    sources = "live events and stored conversation"
    if audio is not None:
        heard = sum(1 for a in audio if a is not None)
        sources += (f" and recorded audio (WER at most {spec.max_audio_wer:g})" if heard
                    else "; the audio was not recognised")
    return [Check(name=name, passed=True, detail=f"{len(rows)} agent turns agree: {sources}")]


# ---- platform_verdict: the backend's own analysis of the call


def _verdict_checks(expect: Expectations, call: CallFacts) -> list[Check]:
    """One check per verdict the persona names: the overall one, each evaluation criterion, each
    data collection value. Without the backend's analysis every one fails, saying why: a verdict
    nobody looked at is not a pass."""
    spec = expect.platform_verdict
    if spec is None:
        return []
    wanted: list[tuple[str, str, str, Any]] = []  # (kind, check name, id, expected)
    if spec.call_successful is not None:
        wanted.append(("overall", "platform_verdict: call_successful", "call_successful", spec.call_successful))
    wanted += [("criterion", f"platform_verdict: criterion {key}", key, value)
               for key, value in spec.evaluation_criteria.items()]
    wanted += [("data", f"platform_verdict: data {key}", key, value) for key, value in spec.data_collection.items()]
    analysis = call.analysis
    missing = ("not judged: the backend's analysis of the call was not fetched" if analysis is None
               else f"not judged: {analysis.error}" if getattr(analysis, "error", None) else None)
    if missing is not None:
        return [Check(name=name, passed=False, detail=missing) for _, name, _, _ in wanted]
    criteria = getattr(analysis, "evaluation_criteria_results", {}) or {}
    collected = getattr(analysis, "data_collection_results", {}) or {}
    out = []
    for kind, name, key, value in wanted:
        if kind == "overall":
            got = analysis.call_successful
            out.append(Check(name=name, passed=got == value, detail=f"{got or 'no verdict'} (expected {value})"))
        elif kind == "criterion":
            result = (criteria.get(key) or {}).get("result")
            why = (criteria.get(key) or {}).get("rationale")
            out.append(Check(name=name, passed=result == value,
                             detail=(f"{result} (expected {value})" + (f": {why}" if why else "")) if result
                             else f"the backend judged no criterion {key!r} (expected {value})"))
        else:
            item = collected.get(key)
            got = None if item is None else item.get("value")
            passed = got is not None and _matches(str(value), str(got))
            out.append(Check(name=name, passed=passed,
                             detail=f"{got!r} (expected {value!r})" if item is not None
                             else f"the backend collected no {key!r} (expected {value!r})"))
    return out


_TOOL_SENTENCE = r"the tool (\w+)(?: with (.+?))?(?: (\d+) times)?\.?"

#: Every expectation key, in the order its checks and sentences appear.
REGISTRY: tuple[Expectation, ...] = (
    Expectation("agent_says", _says_checks, lambda e: [f"The agent says \"{p}\"." for p in e.agent_says],
                re.compile(r'The agent says "(.+)"\.?'), _says_judge),
    Expectation("agent_never_says", _never_says_checks,
                lambda e: [f"The agent never says \"{p}\"." for p in e.agent_never_says],
                re.compile(r'The agent never says "(.+)"\.?'), _never_says_judge),
    Expectation("agent_says_in_order", _in_order_checks, _in_order_conditions,
                re.compile(rf"The agent says these phrases in this order: ({_QUOTED}(?:, then {_QUOTED})*)\.?"),
                _in_order_judge),
    Expectation("max_duration_s", _duration_checks),
    Expectation("max_latency_ms", _latency_checks),
    Expectation("min_turns", _turns_checks, _turns_conditions,
                re.compile(r"The conversation has at least (\d+) turns\.?"), _turns_judge),
    Expectation("ended_by", _ended_checks, _ended_conditions,
                re.compile(r"The (agent|caller) ends the call\.?"), _ended_judge),
    Expectation("agent_calls", lambda e, call: _calls_checks(e, call.tool_calls), _calls_conditions,
                re.compile("The agent calls " + _TOOL_SENTENCE), _calls_judge),
    Expectation("agent_never_calls", lambda e, call: _never_calls_checks(e, call.tool_calls),
                _never_calls_conditions,
                re.compile("The agent never calls " + _TOOL_SENTENCE), _never_calls_judge),
    Expectation("recording", _recording_checks),
    Expectation("transcripts_agree", _agree_checks),
    Expectation("platform_verdict", _verdict_checks),
)
EXPECTATIONS: dict[str, Expectation] = {entry.key: entry for entry in REGISTRY}

#: What a judge is told when a persona expects nothing a sentence can say.
DEFAULT_CONDITION = "The agent handles the caller politely and ends the call properly."


def checks(expect: Expectations, transcript: list[TranscriptEntry], *, duration_s: float,
           end_reason: EndReason, tool_calls: list[ToolCallRecord] | None = None,
           stored_transcript: list[TranscriptEntry] | None = None, mode: str = "text",
           analysis: Analysis | None = None) -> list[Check]:
    """Every expectation's named checks on a finished call, in registry order."""
    call = CallFacts(transcript, duration_s, end_reason, tool_calls or [], stored_transcript, mode, analysis)
    return [check for entry in REGISTRY for check in entry.evaluate(expect, call)]


def success_conditions(expect: Expectations) -> list[str]:
    """What a platform judge or simulated user is told success means (agent-testing's
    `success_conditions`): every expectation's sentences, else `DEFAULT_CONDITION`."""
    return [sentence for entry in REGISTRY for sentence in entry.conditions(expect)] or [DEFAULT_CONDITION]


def judge_condition(sentence: str, sim: Simulation) -> Judged | None:
    """A local simulation's verdict on one success condition (met, and why), read by the
    registry's grammar; None for a sentence outside it (the caller says it cannot judge it)."""
    for entry in REGISTRY:
        if entry.sentence is not None and entry.judge is not None and (m := entry.sentence.fullmatch(sentence)):
            return entry.judge(m, sim)  # the grammars never overlap: no other entry matches
    if sentence == DEFAULT_CONDITION:
        return sim.ended_by == "agent", f"ended by the {sim.ended_by}"
    return None


def success(status: str, results: list[Check]) -> bool:
    return status == "completed" and all(c.passed for c in results)


def finished_result(request: CallRequest, transcript: list[TranscriptEntry], *, end_reason: EndReason,
                    duration_s: float, started_at: str, error: str | None = None,
                    conversation_id: str | None = None, interruptions: int = 0, analysis: Analysis | None = None,
                    retries: list[dict] | None = None, voice: VoiceStats | None = None,
                    tool_calls: list[ToolCallRecord] | None = None,
                    stored_transcript: list[TranscriptEntry] | None = None) -> CallResult:
    """The one way every runner (conversation, platform, phone) turns a finished call into a
    CallResult: status from the end reason, checks from the persona's expectations."""
    status = "failed" if end_reason in ("error", "disconnected", "cancelled") else "completed"
    duration = round(duration_s, 3)
    results = checks(request.persona.expect, transcript, duration_s=duration, end_reason=end_reason,
                     tool_calls=tool_calls, stored_transcript=stored_transcript, mode=request.mode,
                     analysis=analysis)
    measured = metrics(transcript, voice.interruptions if voice else interruptions)
    if voice is not None:
        audio = request.persona.caller.audio
        measured = measured.model_copy(update={
            "talk_ratio": voice.talk_ratio, "wer": voice.wer, "first_audio_ms": voice.first_audio_ms,
            "first_speech_ms": voice.first_speech_ms, "frames_lost": voice.frames_lost,
            "barge_ins": voice.barge_ins,
            "condition": audio.label() if audio is not None else "clean"})
    return CallResult(
        conversation_id=conversation_id, status=status, duration_seconds=duration, transcript=transcript,
        run_id=request.run_id, call_id=request.call_id, persona_id=request.persona.id, agent_id=request.agent.id,
        backend=request.backend, caller=request.caller, mode=request.mode, started_at=started_at,
        end_reason=end_reason, error=error, checks=results, metrics=measured,
        success=success(status, results), analysis=analysis, retries=retries or [],
        audio_path=voice.audio_path if voice else None, tool_calls=tool_calls or [], variant=request.variant,
        stored_transcript=stored_transcript,
    )
