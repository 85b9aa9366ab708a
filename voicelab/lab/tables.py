"""Stored results -> pandas tables. Pure: the same runs always give the same tables.

    tables = voicelab.load_runs("run-20261121-101500")      # one run, or several ids
    tables.calls      one row per call
    tables.turns      one row per transcript entry
    tables.tools      one row per tool call (joins calls on run_id + call_id, turns also on turn)
    tables.to_parquet("out/")
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from voicelab.lab.store import DEFAULT_ROOT, RunStore
from voicelab.spec.checks import percentile
from voicelab.spec.errors import RunStoreError
from voicelab.spec.models import CallResult, PlatformConversation, PlatformTestRun, RunManifest, ToolCallRecord

CALL_COLUMNS = [
    "run_id", "call_id", "persona_id", "persona_name", "agent_id", "style", "language", "backend", "caller",
    "mode", "status", "end_reason", "success", "duration_s", "turns", "agent_turns", "user_turns",
    "interruptions", "talk_ratio", "wer", "audio_path", "latency_p50_ms", "latency_p95_ms", "checks_passed",
    "checks_total", "failed_checks",
    "error", "conversation_id", "started_at", "retries", "platform_call_successful", "platform_verdict",
    "agrees_with_platform", "variant", "condition", "first_audio_p50_ms", "first_speech_p50_ms", "frames_lost",
    "stop_latency_ms", "caller_conversation_id",
]
TURN_COLUMNS = ["run_id", "call_id", "persona_id", "agent_id", "style", "language", "turn", "speaker", "text",
                "timestamp_s", "latency_ms", "variant"]
BARGE_IN_COLUMNS = ["run_id", "call_id", "persona_id", "agent_id", "variant", "agent_turn", "said", "backchannel",
                    "stopped", "interruption_ms", "audio_stop_ms", "corrected", "answered"]
TOOL_COLUMNS = ["run_id", "call_id", "persona_id", "agent_id", "turn", "tool", "type", "args", "result", "is_error",
                "at_s", "latency_ms", "tool_call_id"]


def _info(manifests: dict[str, RunManifest], result: CallResult) -> dict[str, str]:
    manifest = manifests.get(result.run_id or "")
    return (manifest.persona_info.get(result.persona_id, {}) if manifest else {})


def platform_view(r: CallResult) -> tuple[str | None, str | None, bool | None]:
    """The platform's verdict on a call and whether we agree, read by the analysis' `source`:
    `platform` (the conversation's post-call analysis: its summary) or `platform-test`
    (agent-testing: the judge's rationale)."""
    match r.analysis:
        case PlatformConversation(call_successful=verdict, transcript_summary=text):
            pass
        case PlatformTestRun() as run:
            verdict, text = run.verdict()
        case _:
            return None, None, None
    if verdict not in ("success", "failure"):
        return verdict, text, None
    return verdict, text, (verdict == "success") == r.success


def calls_table(results: list[CallResult], manifests: dict[str, RunManifest] | None = None) -> pd.DataFrame:
    manifests = manifests or {}
    rows = []
    for r in results:
        info = _info(manifests, r)
        lat = r.metrics.response_latency_ms
        failed = [c.name for c in r.checks if not c.passed]
        verdict, verdict_text, agrees = platform_view(r)
        rows.append({
            "run_id": r.run_id, "call_id": r.call_id, "persona_id": r.persona_id,
            "persona_name": info.get("name", r.persona_id), "agent_id": r.agent_id,
            "style": info.get("style", ""), "language": info.get("language", ""), "backend": r.backend,
            "caller": r.caller, "mode": r.mode, "status": r.status, "end_reason": r.end_reason,
            "success": r.success, "duration_s": r.duration_seconds, "turns": r.metrics.turns,
            "agent_turns": r.metrics.agent_turns, "user_turns": r.metrics.user_turns,
            "interruptions": r.metrics.interruptions, "talk_ratio": r.metrics.talk_ratio, "wer": r.metrics.wer,
            "audio_path": r.audio_path,
            "latency_p50_ms": percentile(lat, 50), "latency_p95_ms": percentile(lat, 95),
            "checks_passed": len(r.checks) - len(failed), "checks_total": len(r.checks),
            "failed_checks": ", ".join(failed), "error": r.error, "conversation_id": r.conversation_id,
            "started_at": r.started_at, "retries": len(r.retries), "platform_call_successful": verdict,
            "platform_verdict": verdict_text, "agrees_with_platform": agrees, "variant": r.variant,
            "condition": r.metrics.condition, "first_audio_p50_ms": percentile(r.metrics.first_audio_ms, 50),
            "first_speech_p50_ms": percentile(r.metrics.first_speech_ms, 50), "frames_lost": r.metrics.frames_lost,
            "stop_latency_ms": percentile([b.audio_stop_ms for b in r.metrics.barge_ins
                                           if b.stopped and b.audio_stop_ms is not None], 50),
            "caller_conversation_id": r.caller_conversation_id,
        })
    return pd.DataFrame(rows, columns=CALL_COLUMNS)


def barge_ins_table(results: list[CallResult]) -> pd.DataFrame:
    """One row per timed barge-in (`caller.interrupt`): did the agent stop, how fast (from the
    caller's onset to the `interruption` event and to its audio stopping), was its cut turn
    corrected, did it answer what was said over it. A backchannel row should show `stopped` False."""
    rows = [{"run_id": r.run_id, "call_id": r.call_id, "persona_id": r.persona_id, "agent_id": r.agent_id,
             "variant": r.variant, **b.model_dump(exclude={"onset_s"})}
            for r in results for b in r.metrics.barge_ins]
    return pd.DataFrame(rows, columns=BARGE_IN_COLUMNS)


def by_condition(calls: pd.DataFrame) -> pd.DataFrame:
    """Voice calls per audio condition: how many, the share that succeeded, mean WER, median
    response latency and time to first audio ('the agent fails at 5 dB SNR' is one row)."""
    voice = calls[calls["condition"].notna()]
    if voice.empty:
        return pd.DataFrame(columns=["condition", "calls", "success_rate", "wer", "latency_p50_ms",
                                     "first_audio_p50_ms", "timeouts", "frames_lost"])
    grouped = voice.groupby("condition", sort=False)
    return pd.DataFrame({
        "calls": grouped.size(), "success_rate": grouped["success"].mean().astype(float),
        "wer": grouped["wer"].mean(), "latency_p50_ms": grouped["latency_p50_ms"].median(),
        "first_audio_p50_ms": grouped["first_audio_p50_ms"].median(),
        "timeouts": grouped["end_reason"].apply(lambda e: int((e == "timeout").sum())),
        "frames_lost": grouped["frames_lost"].sum(),
    }).reset_index()


def turns_table(results: list[CallResult], manifests: dict[str, RunManifest] | None = None) -> pd.DataFrame:
    manifests = manifests or {}
    rows = []
    for r in results:
        info = _info(manifests, r)
        for index, entry in enumerate(r.transcript, 1):
            rows.append({
                "run_id": r.run_id, "call_id": r.call_id, "persona_id": r.persona_id, "agent_id": r.agent_id,
                "style": info.get("style", ""), "language": info.get("language", ""), "turn": index,
                "speaker": entry.speaker, "text": entry.text, "timestamp_s": entry.timestamp,
                "latency_ms": entry.latency_ms, "variant": r.variant,
            })
    return pd.DataFrame(rows, columns=TURN_COLUMNS)


def turn_of(r: CallResult, call: ToolCallRecord) -> int:
    """The transcript turn a tool call follows (1-based, as in the turns table; 0 before the
    first): counted when the call was made, else the last turn that started before it."""
    if call.turn is not None:
        return call.turn
    return sum(1 for t in r.transcript if t.timestamp < call.at)


def tools_table(results: list[CallResult]) -> pd.DataFrame:
    """One row per tool call; arguments and results as JSON text, so the table stores anywhere."""
    rows = []
    for r in results:
        for call in r.tool_calls:
            rows.append({
                "run_id": r.run_id, "call_id": r.call_id, "persona_id": r.persona_id, "agent_id": r.agent_id,
                "turn": turn_of(r, call), "tool": call.tool, "type": call.type,
                "args": json.dumps(call.args, ensure_ascii=False),
                "result": None if call.result is None else json.dumps(call.result, ensure_ascii=False),
                "is_error": call.is_error, "at_s": call.at, "latency_ms": call.latency_ms, "tool_call_id": call.id,
            })
    return pd.DataFrame(rows, columns=TOOL_COLUMNS)


def tools_summary(tools: pd.DataFrame, calls: pd.DataFrame, manifests: dict[str, RunManifest]) -> pd.DataFrame:
    """Per persona: which tools were called (how often, how many failed) and which of its agent's
    tools were never called in any of its calls."""
    declared: dict[str, list[str]] = {}
    for manifest in manifests.values():
        for persona_id, info in manifest.persona_info.items():
            names = [n.strip() for n in info.get("tools", "").split(",") if n.strip()]
            declared.setdefault(persona_id, [])
            declared[persona_id] += [n for n in names if n not in declared[persona_id]]
    rows = []
    for persona_id in sorted(set(calls["persona_id"]) if len(calls) else set()):
        mine = tools[tools["persona_id"] == persona_id] if len(tools) else tools
        counts = mine.groupby("tool").agg(n=("tool", "size"), failed=("is_error", "sum")) if len(mine) else None
        called = [] if counts is None else [f"{tool} ×{row.n}" for tool, row in counts.iterrows()]
        failed = [] if counts is None else [f"{tool} ×{int(row.failed)}" for tool, row in counts.iterrows()
                                            if row.failed]
        seen = set(mine["tool"]) if len(mine) else set()
        rows.append({"persona_id": persona_id, "calls": int((calls["persona_id"] == persona_id).sum()),
                     "tools_called": ", ".join(called), "tools_failed": ", ".join(failed),
                     "never_called": ", ".join(t for t in declared.get(persona_id, []) if t not in seen)})
    return pd.DataFrame(rows, columns=["persona_id", "calls", "tools_called", "tools_failed", "never_called"])


def kpis(calls: pd.DataFrame, turns: pd.DataFrame) -> dict[str, float]:
    """The numbers at the top of a report."""
    latencies = turns["latency_ms"].dropna().tolist() if len(turns) else []
    return {
        "calls": len(calls),
        "success_rate": float(calls["success"].mean()) if len(calls) else float("nan"),
        "passed": int(calls["success"].sum()) if len(calls) else 0,
        #: completed calls whose checks failed
        "failed_checks": int(((calls["status"] == "completed") & ~calls["success"].astype(bool)).sum())
        if len(calls) else 0,
        #: calls that could not be placed or completed (error, disconnect, cancel)
        "failed_calls": int((calls["status"] == "failed").sum()) if len(calls) else 0,
        "median_duration_s": float(calls["duration_s"].median()) if len(calls) else float("nan"),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
    }


@dataclass
class Tables:
    results: list[CallResult]
    manifests: dict[str, RunManifest]
    calls: pd.DataFrame
    turns: pd.DataFrame
    tools: pd.DataFrame
    #: run id -> what could not be read of its calls.jsonl (reports show it in their header)
    unreadable: dict[str, str] = field(default_factory=dict)
    #: run id -> its folder (where its recordings are)
    paths: dict[str, Path] = field(default_factory=dict)

    def kpis(self) -> dict[str, float]:
        return kpis(self.calls, self.turns)

    def tools_summary(self) -> pd.DataFrame:
        return tools_summary(self.tools, self.calls, self.manifests)

    def to_parquet(self, folder: str | Path) -> tuple[Path, Path, Path]:
        """calls.parquet, turns.parquet and tools.parquet in `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = folder / "calls.parquet", folder / "turns.parquet", folder / "tools.parquet"
        for table, path in zip((self.calls, self.turns, self.tools), paths, strict=True):
            table.to_parquet(path, index=False)
        return paths


def load_runs(*run_ids: str | Iterable[str], root: str | Path = DEFAULT_ROOT) -> Tables:
    """Tables for one or more stored runs (ids under `root`, or run folders): `load_runs("a")`,
    `load_runs("a", "b")` or `load_runs(["a", "b"])`."""
    ids = [i for item in run_ids for i in ([item] if isinstance(item, str | Path) else item)]
    if not ids:
        raise RunStoreError("load_runs needs at least one run id (see `ls runs/`)")
    store = RunStore(root)
    results: list[CallResult] = []
    manifests: dict[str, RunManifest] = {}
    unreadable: dict[str, str] = {}
    paths: dict[str, Path] = {}
    for run_id in ids:
        run = store.open(str(run_id))
        manifests[run.run_id] = run.manifest
        paths[run.run_id] = run.path.resolve()
        results.extend(run.results())
        if run.unreadable_lines:
            unreadable[run.run_id] = run.unreadable_summary()
    return Tables(results, manifests, calls_table(results, manifests), turns_table(results, manifests),
                  tools_table(results), unreadable, paths)
