"""Expectations -> named checks -> success, and a call's metrics. Pure functions of a result.

A call succeeds only when it completed and every check passed, so "no expectations" never hides
a broken call.
"""

from __future__ import annotations

import re
from typing import Any

from voicelab.spec.models import (
    Analysis,
    CallRequest,
    CallResult,
    Check,
    EndReason,
    Expectations,
    Metrics,
    ToolCallRecord,
    TranscriptEntry,
    VoiceStats,
)

#: `any` means the call ended properly (someone hung up), not by timeout or error.
ENDED_BY = {"agent": {"agent_ended"}, "caller": {"caller_ended"}, "any": {"agent_ended", "caller_ended"}}


def says(text: str, phrase: str) -> bool:
    """Case-insensitive phrase match on word boundaries, so "PIN" does not match "shopping"."""
    pattern = re.escape(phrase.lower())
    if phrase[:1].isalnum():
        pattern = r"\b" + pattern
    if phrase[-1:].isalnum():
        pattern += r"\b"
    return re.search(pattern, text.lower()) is not None


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


def tool_checks(expect: Expectations, calls: list[ToolCallRecord]) -> list[Check]:
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
    for tool in expect.agent_never_calls:
        hits = [c for c in calls if c.tool == tool]
        out.append(Check(name=f"agent_never_calls: {tool}", passed=not hits,
                         detail="never called" if not hits else f"called at {hits[0].at:.1f} s"))
    return out


def checks(expect: Expectations, transcript: list[TranscriptEntry], *, duration_s: float,
           end_reason: EndReason, tool_calls: list[ToolCallRecord] | None = None) -> list[Check]:
    agent_text = [t.text for t in transcript if t.speaker == "agent"]
    out: list[Check] = []
    for phrase in expect.agent_says:
        hit = next((i for i, text in enumerate(agent_text) if says(text, phrase)), None)
        out.append(Check(name=f"agent_says: {phrase}", passed=hit is not None,
                         detail=f"said in agent turn {hit + 1}" if hit is not None
                         else f"not said in any of {len(agent_text)} agent turns"))
    for phrase in expect.agent_never_says:
        hit = next((i for i, text in enumerate(agent_text) if says(text, phrase)), None)
        out.append(Check(name=f"agent_never_says: {phrase}", passed=hit is None,
                         detail="never said" if hit is None else f"said in agent turn {hit + 1}"))
    if expect.max_duration_s is not None:
        out.append(Check(name="max_duration_s", passed=duration_s <= expect.max_duration_s,
                         detail=f"{duration_s:.1f} s (limit {expect.max_duration_s:g} s)"))
    if expect.max_latency_ms is not None:
        answers = [(i, t.latency_ms) for i, t in enumerate(transcript, 1) if t.latency_ms is not None]
        slowest = max(answers, key=lambda a: a[1], default=None)
        out.append(Check(name="max_latency_ms", passed=slowest is None or slowest[1] <= expect.max_latency_ms,
                         detail=f"slowest answer {slowest[1]:.0f} ms in turn {slowest[0]} (limit "
                                f"{expect.max_latency_ms:g} ms)" if slowest else "no answer was timed"))
    if expect.min_turns is not None:
        out.append(Check(name="min_turns", passed=len(transcript) >= expect.min_turns,
                         detail=f"{len(transcript)} turns (at least {expect.min_turns})"))
    if expect.ended_by is not None:
        passed = end_reason in ENDED_BY[expect.ended_by]
        out.append(Check(name=f"ended_by: {expect.ended_by}", passed=passed,
                         detail=f"end reason: {end_reason}"))
    return out + tool_checks(expect, tool_calls or [])


def success(status: str, results: list[Check]) -> bool:
    return status == "completed" and all(c.passed for c in results)


def finished_result(request: CallRequest, transcript: list[TranscriptEntry], *, end_reason: EndReason,
                    duration_s: float, started_at: str, error: str | None = None,
                    conversation_id: str | None = None, interruptions: int = 0, analysis: Analysis | None = None,
                    retries: list[dict] | None = None, voice: VoiceStats | None = None,
                    tool_calls: list[ToolCallRecord] | None = None) -> CallResult:
    """The one way every runner (conversation, platform, phone) turns a finished call into a
    CallResult: status from the end reason, checks from the persona's expectations."""
    status = "failed" if end_reason in ("error", "disconnected", "cancelled") else "completed"
    duration = round(duration_s, 3)
    results = checks(request.persona.expect, transcript, duration_s=duration, end_reason=end_reason,
                     tool_calls=tool_calls)
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
    )
