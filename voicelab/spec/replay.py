"""What changed since a recording: a replayed call against the recorded one, caller turn by caller
turn (the `recording` check in spec/checks.py; the recording comes from `voicelab import-calls`).

Both calls are cut at the caller's turns: part 0 is what the agent said and did before the
caller's first turn, part k what it said and did after caller turn k. The replay caller says the
same caller turns in the same order (spec/script.py, style `replay`), so part k of the replay is
compared with part k of the recording:

- words: an agent turn that now says something else, one that is new, one that is gone;
- tools: a recorded tool call that is now made after another caller turn (moved), one that is
  no longer made at all (or only with other arguments), one that is new;
- the end: who ended the call, and after which caller turn.

Only a recorded tool call no longer reached, or the recorded end no longer reached (someone else
ends it, or it ends before the caller has said all its recorded turns), breaks the recorded path:
the agent may word things differently and still do what the recording did. Everything else is
reported, so a person sees what changed. Pure functions, so the diff is tested on generated turns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from voicelab.spec.models import RecordedStep, Recording, ToolCallRecord, TranscriptEntry

#: Tools that are how a call ends, compared as the end rather than as tool calls.
ENDING_TOOLS = ("end_call",)
#: The end reasons of a call someone hung up, by who did.
ENDED_BY_REASON = {"agent_ended": "agent", "caller_ended": "caller"}
QUOTE_CHARS = 60


@dataclass(frozen=True)
class Part:
    """What the agent said and did between two caller turns."""

    agent: tuple[str, ...] = ()
    #: (tool, canonical JSON of its arguments)
    tools: tuple[tuple[str, str], ...] = ()


@dataclass
class Diff:
    """The differences of a replay from its recording; `broken` are those that fail the check."""

    broken: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not self.broken and not self.changed

    def detail(self, caller_turns: int) -> str:
        if self.same:
            return (f"the agent took the recorded path: {caller_turns} caller turn{'s' if caller_turns != 1 else ''}, "
                    "the same words, tool calls and end")
        return "; ".join(self.broken + self.changed)  # no clause has "; " in it: the report splits on it


def _args_key(args: Any) -> str:
    """Arguments compared as the `agent_calls` check compares them: strings case-insensitively."""
    def norm(value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value
    if not isinstance(args, dict):
        return json.dumps(norm(args), sort_keys=True, default=str)
    return json.dumps({str(k): norm(v) for k, v in args.items()}, sort_keys=True, default=str, ensure_ascii=False)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _quote(text: str) -> str:
    """A turn's words, short, in quotes; never with "; ", which separates the detail's clauses."""
    text = " ".join(text.split()).replace("; ", ", ")
    return json.dumps(text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "...", ensure_ascii=False)


class _Cutter:
    """Cuts a call into parts at the caller's turns. Caller turns with no agent words between
    them (said in one breath, e.g. an interrupting caller's two lines) are one cut: each side
    orders a tool call made meanwhile differently (the backend's history by when it took each
    line, the caller's transcript by when it sent them), and either is the same path."""

    def __init__(self) -> None:
        self.parts: list[tuple[list[str], list[tuple[str, str]]]] = [([], [])]
        #: every caller turn's words, in order
        self.callers: list[str] = []
        #: per part after the first: (the number of the last caller turn before it, its words)
        self.cuts: list[tuple[int, str]] = []
        self._words_since_cut = True

    def caller(self, text: str) -> None:
        self.callers.append(text)
        if self._words_since_cut:
            self.parts.append(([], []))
            self.cuts.append((len(self.callers), text))
        else:  # the same breath: the cut moves to this turn, the part stays
            self.cuts[-1] = (len(self.callers), text)
        self._words_since_cut = False

    def agent(self, text: str) -> None:
        if text.strip():
            self.parts[-1][0].append(text)
            self._words_since_cut = True

    def tool(self, name: str, args: Any) -> None:
        if name not in ENDING_TOOLS:
            self.parts[-1][1].append((name, _args_key(args)))

    def done(self) -> tuple[list[Part], list[tuple[int, str]], list[str]]:
        return [Part(tuple(a), tuple(t)) for a, t in self.parts], self.cuts, self.callers


Cut = tuple[list[Part], list[tuple[int, str]], list[str]]


def recorded_parts(steps: list[RecordedStep]) -> Cut:
    """The recording cut at its caller turns: the parts, where each begins, every caller turn."""
    cut = _Cutter()
    for step in steps:
        if step.caller is not None:
            cut.caller(step.caller)
        elif step.agent is not None:
            cut.agent(step.agent)
        elif step.tool is not None:
            cut.tool(step.tool, step.args)
    return cut.done()


def replayed_parts(transcript: list[TranscriptEntry], tool_calls: list[ToolCallRecord]) -> Cut:
    """A finished call cut at its caller turns, each tool call in the part it was made in (by its
    `turn`, the transcript entries before it; by its time where that is unknown)."""
    def entries_before(call: ToolCallRecord) -> int:
        if call.turn is not None:
            return call.turn
        return sum(1 for e in transcript if e.timestamp <= call.at)

    cut = _Cutter()
    pending = sorted(((entries_before(c), i, c) for i, c in enumerate(tool_calls)), key=lambda x: (x[0], x[1]))
    k = 0
    for index in range(len(transcript) + 1):
        while k < len(pending) and (index == len(transcript) or pending[k][0] <= index):
            cut.tool(pending[k][2].tool, pending[k][2].args)
            k += 1
        if index == len(transcript):
            break
        entry = transcript[index]
        if entry.speaker == "user":
            cut.caller(entry.said if entry.said is not None else entry.text)
        else:
            cut.agent(entry.text)
    return cut.done()


def _where(k: int, cuts: list[tuple[int, str]]) -> str:
    if k == 0:
        return "before the caller's first turn"
    turn, said = cuts[k - 1] if k - 1 < len(cuts) else (k, "")
    return f"after caller turn {turn}" + (f" ({_quote(said)})" if said else "")


def _tool_text(tool: tuple[str, str]) -> str:
    args = json.loads(tool[1])
    if isinstance(args, dict) and args:
        return f"{tool[0]}({', '.join(f'{k}={v}' for k, v in args.items())})".replace("; ", ", ")
    return tool[0]


def compare(recording: Recording, transcript: list[TranscriptEntry], tool_calls: list[ToolCallRecord],
            end_reason: str) -> Diff:
    """The replay (`transcript`, `tool_calls`, `end_reason` of the new call) against `recording`."""
    old, old_cuts, old_callers = recorded_parts(recording.steps)
    new, new_cuts, new_callers = replayed_parts(transcript, tool_calls)
    diff = Diff()
    # tools: where each recorded call is made now (a moved call is still reached)
    new_tools: list[tuple[int, tuple[str, str]]] = [(k, t) for k, part in enumerate(new) for t in part.tools]
    unmatched_new = list(new_tools)
    moved_or_gone: list[tuple[int, tuple[str, str]]] = []
    for k, part in enumerate(old):  # first the calls made in the same part
        for tool in part.tools:
            if (k, tool) in unmatched_new:
                unmatched_new.remove((k, tool))
            else:
                moved_or_gone.append((k, tool))
    for k, tool in moved_or_gone:
        elsewhere = next(((j, t) for j, t in unmatched_new if t == tool), None)
        if elsewhere is not None:
            unmatched_new.remove(elsewhere)
            diff.changed.append(f"{_where(k, old_cuts)}: {_tool_text(tool)} moved: now made "
                                f"{_where(elsewhere[0], new_cuts)}")
            continue
        same_tool = [t for _, t in unmatched_new if t[0] == tool[0]]
        also = f" (called with {', '.join(_tool_text(t) for t in same_tool)} instead)" if same_tool else ""
        diff.broken.append(f"{_where(k, old_cuts)}: recorded tool call {_tool_text(tool)} no longer made{also}")
    for j, tool in unmatched_new:
        diff.changed.append(f"{_where(j, new_cuts)}: new tool call {_tool_text(tool)}")
    # words, part by part
    for k in range(max(len(old), len(new))):
        was = old[k].agent if k < len(old) else ()
        now = new[k].agent if k < len(new) else ()
        where = _where(k, new_cuts if k <= len(new_cuts) else old_cuts)
        for i in range(max(len(was), len(now))):
            if i < len(was) and i < len(now):
                if _norm(was[i]) != _norm(now[i]):
                    diff.changed.append(f"{where}: the agent now says {_quote(now[i])} (recorded: {_quote(was[i])})")
            elif i < len(now):
                diff.changed.append(f"{where}: the agent now also says {_quote(now[i])}")
            elif k < len(new):  # a part the replay reached, with fewer agent turns
                diff.changed.append(f"{where}: the agent no longer says {_quote(was[i])}")
    # the end
    recorded_turns = len(old_callers)
    if len(new_callers) < recorded_turns:
        missing = len(new_callers)
        ended_at = f"after caller turn {missing}" if missing else "before the caller's first turn"
        diff.broken.insert(0, f"the call ended {ended_at}, before caller turn {missing + 1} of "
                              f"the recording's {recorded_turns} ({_quote(old_callers[missing])})")
    ended_by = ENDED_BY_REASON.get(end_reason)
    if recording.ended_by is not None and ended_by != recording.ended_by:
        now_end = f"the {ended_by} ended it" if ended_by else f"it ended by {end_reason}"
        diff.broken.append(f"recorded end not reached: the {recording.ended_by} ended the recorded call "
                           f"{_where(len(old_cuts), old_cuts)}, and now {now_end}")
    return diff
