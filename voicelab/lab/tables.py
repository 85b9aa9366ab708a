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
from itertools import compress, repeat
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from voicelab.lab.store import DEFAULT_ROOT, Run, RunStore
from voicelab.spec.checks import percentile
from voicelab.spec.errors import RunStoreError, UsageError
from voicelab.spec.models import CallResult, PlatformConversation, PlatformTestRun, RunManifest, ToolCallRecord
from voicelab.spec.transcripts import DEFAULT_MAX_AUDIO_WER, DEFAULT_MAX_WER, compare

CALL_COLUMNS = [
    "run_id", "call_id", "persona_id", "persona_name", "agent_id", "style", "language", "backend", "caller",
    "mode", "status", "end_reason", "success", "duration_s", "turns", "agent_turns", "user_turns",
    "interruptions", "talk_ratio", "wer", "audio_path", "latency_p50_ms", "latency_p95_ms", "checks_passed",
    "checks_total", "failed_checks",
    "error", "conversation_id", "started_at", "retries", "platform_call_successful", "platform_verdict",
    "agrees_with_platform", "variant", "condition", "first_audio_p50_ms", "first_speech_p50_ms", "frames_lost",
    "stop_latency_ms", "caller_conversation_id", "worker",
]
#: `text`: what the agent heard (voice caller turns: its speech recognition); `said`: what the
#: persona said (voice calls with a synthetic or agent caller; empty otherwise).
TURN_COLUMNS = ["run_id", "call_id", "persona_id", "agent_id", "style", "language", "turn", "speaker", "text",
                "said", "timestamp_s", "latency_ms", "variant"]
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


def _call_values(r: CallResult, info: dict[str, str]) -> tuple:
    """One call's row of the calls table, in CALL_COLUMNS order."""
    m = r.metrics
    lat = m.response_latency_ms
    failed = [c.name for c in r.checks if not c.passed]
    verdict, verdict_text, agrees = platform_view(r) if r.analysis is not None else (None, None, None)
    return (
        r.run_id, r.call_id, r.persona_id, info.get("name", r.persona_id), r.agent_id, info.get("style", ""),
        info.get("language", ""), r.backend, r.caller, r.mode, r.status, r.end_reason, r.success,
        r.duration_seconds, m.turns, m.agent_turns, m.user_turns, m.interruptions, m.talk_ratio, m.wer,
        r.audio_path, percentile(lat, 50), percentile(lat, 95), len(r.checks) - len(failed), len(r.checks),
        ", ".join(failed), r.error, r.conversation_id, r.started_at, len(r.retries), verdict, verdict_text, agrees,
        r.variant, m.condition, percentile(m.first_audio_ms, 50), percentile(m.first_speech_ms, 50),
        m.frames_lost,
        percentile([b.audio_stop_ms for b in m.barge_ins if b.stopped and b.audio_stop_ms is not None], 50),
        r.caller_conversation_id, r.worker,
    )


def calls_table(results: list[CallResult], manifests: dict[str, RunManifest] | None = None) -> pd.DataFrame:
    manifests = manifests or {}
    rows = [dict(zip(CALL_COLUMNS, _call_values(r, _info(manifests, r)), strict=True)) for r in results]
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


def wer_by_persona(calls: pd.DataFrame) -> pd.DataFrame:
    """Per persona, over its voice calls that measured one: the mean word error rate of what the
    agent heard against what the persona said (`wer` per call), its worst call, and how many
    calls. A persona misheard often fails for the recogniser, not the flow: this says which."""
    columns = ["persona_id", "calls", "wer_mean", "wer_max"]
    measured = calls[calls["wer"].notna()] if len(calls) and "wer" in calls else calls.iloc[0:0]
    if measured.empty:
        return pd.DataFrame(columns=columns)
    grouped = measured.groupby("persona_id", sort=True)["wer"]
    return pd.DataFrame({"calls": grouped.size(), "wer_mean": grouped.mean().astype(float).round(3),
                         "wer_max": grouped.max().astype(float).round(3)}).reset_index()[columns]


def by_worker(calls: pd.DataFrame) -> pd.DataFrame:
    """Calls per Dask worker of a `--cluster` run: how many each placed, the share that
    succeeded, median duration and p95 latency (a worker that is slower or fails more, say
    because its machine is overloaded, is one row). Empty when no call names a worker."""
    columns = ["worker", "calls", "success_rate", "duration_p50_s", "latency_p95_ms", "could_not_complete"]
    placed = calls[calls["worker"].notna()] if "worker" in calls else calls.iloc[0:0]
    if placed.empty:
        return pd.DataFrame(columns=columns)
    grouped = placed.groupby("worker", sort=True)
    return pd.DataFrame({
        "calls": grouped.size(), "success_rate": grouped["success"].mean().astype(float),
        "duration_p50_s": grouped["duration_s"].median(), "latency_p95_ms": grouped["latency_p95_ms"].median(),
        "could_not_complete": grouped["status"].apply(lambda s: int((s == "failed").sum())),
    }).reset_index()[columns]


def turns_table(results: list[CallResult], manifests: dict[str, RunManifest] | None = None) -> pd.DataFrame:
    manifests = manifests or {}
    rows = []
    for r in results:
        info = _info(manifests, r)
        for index, entry in enumerate(r.transcript, 1):
            rows.append({
                "run_id": r.run_id, "call_id": r.call_id, "persona_id": r.persona_id, "agent_id": r.agent_id,
                "style": info.get("style", ""), "language": info.get("language", ""), "turn": index,
                "speaker": entry.speaker, "text": entry.text, "said": entry.said, "timestamp_s": entry.timestamp,
                "latency_ms": entry.latency_ms, "variant": r.variant,
            })
    return pd.DataFrame(rows, columns=TURN_COLUMNS)


DISAGREEMENT_COLUMNS = ["run_id", "call_id", "persona_id", "agent_id", "variant", "mode", "agent_turn",
                        "stored_turn", "live", "stored", "audio", "text_wer", "audio_wer", "problem", "odd_one_out",
                        "detail", "check_passed"]


def transcript_disagreements(results: Iterable[CallResult], *, max_wer: float = DEFAULT_MAX_WER,
                             max_audio_wer: float = DEFAULT_MAX_AUDIO_WER, every_turn: bool = False) -> pd.DataFrame:
    """One row per agent turn where the accounts of a call disagree (`every_turn`: every agent
    turn), for the calls that gathered them (a stored conversation: `expect.transcripts_agree` or
    the request's `compare_transcripts`): the live text, the stored text, voicelab's recognition
    of the audio (voice calls), their word error rates, the kind of disagreement and the account
    that is the odd one out, so an agent error (two texts differ, or the audio says otherwise)
    is told from a transcription error (only the recognition differs, by little).

    Thresholds are the check's defaults unless given: a persona's own (its check decides its
    verdict, `check_passed`) are not stored in the result."""
    rows = []
    for r in results:
        if r.stored_transcript is None:
            continue
        agent = [t for t in r.transcript if t.speaker == "agent"]
        audio = [t.audio_text for t in agent] if r.mode == "voice" else None
        verdict = next((c.passed for c in r.checks if c.name == "transcripts_agree"), None)
        for turn in compare([t.text for t in agent], [t.text for t in r.stored_transcript if t.speaker == "agent"],
                            audio, max_wer=max_wer, max_audio_wer=max_audio_wer):
            if every_turn or not turn.agrees:
                rows.append({"run_id": r.run_id, "call_id": r.call_id, "persona_id": r.persona_id,
                             "agent_id": r.agent_id, "variant": r.variant, "mode": r.mode,
                             "agent_turn": turn.agent_turn, "stored_turn": turn.stored_turn, "live": turn.live,
                             "stored": turn.stored, "audio": turn.audio, "text_wer": turn.text_wer,
                             "audio_wer": turn.audio_wer, "problem": turn.problem, "odd_one_out": turn.odd_one_out,
                             "detail": turn.detail, "check_passed": verdict})
    return pd.DataFrame(rows, columns=DISAGREEMENT_COLUMNS)


def turn_of(r: CallResult, call: ToolCallRecord) -> int:
    """The transcript turn a tool call follows (1-based, as in the turns table; 0 before the
    first): counted when the call was made, else the last turn that started before it."""
    if call.turn is not None:
        return call.turn
    return sum(1 for t in r.transcript if t.timestamp < call.at)


_JSON = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(v, ensure_ascii=False), one encoder


def _tool_values(r: CallResult, call: ToolCallRecord) -> tuple:
    """One tool call's row of the tools table, in TOOL_COLUMNS order."""
    return (r.run_id, r.call_id, r.persona_id, r.agent_id, turn_of(r, call), call.tool, call.type,
            _JSON(call.args), None if call.result is None else _JSON(call.result),
            call.is_error, call.at, call.latency_ms, call.id)


def tools_table(results: list[CallResult]) -> pd.DataFrame:
    """One row per tool call; arguments and results as JSON text, so the table stores anywhere."""
    rows = [dict(zip(TOOL_COLUMNS, _tool_values(r, call), strict=True)) for r in results for call in r.tool_calls]
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


class Tables:
    """The tables of one or more runs. `results` (every call's CallResult) is parsed only when
    asked for: `load_runs` reads the stored lines straight into columns, so a run of 100,000
    calls never holds 100,000 models. `results_at(rows)` parses just those rows' calls."""

    def __init__(self, results: list[CallResult] | None, manifests: dict[str, RunManifest], calls: pd.DataFrame,
                 turns: pd.DataFrame, tools: pd.DataFrame, unreadable: dict[str, str] | None = None,
                 paths: dict[str, Path] | None = None, *, stored: _Stored | None = None) -> None:
        if results is None and stored is None:
            raise ValueError("Tables needs the results, or where they are stored")
        self._results = results
        self._stored = stored
        self.manifests = manifests
        self.calls = calls
        self.turns = turns
        self.tools = tools
        #: run id -> what could not be read of its calls.jsonl (reports show it in their header)
        self.unreadable: dict[str, str] = unreadable or {}
        #: run id -> its folder (where its recordings are)
        self.paths: dict[str, Path] = paths or {}

    def __repr__(self) -> str:
        return (f"Tables(runs={list(self.manifests)}, calls={len(self.calls)}, turns={len(self.turns)}, "
                f"tools={len(self.tools)})")

    @property
    def results(self) -> list[CallResult]:
        """Every call's CallResult, in the calls table's order (parsed on first use)."""
        if self._results is None:
            self._results = self._stored.parse(range(len(self._stored.source))) if self._stored else []
        return self._results

    def results_at(self, rows: Iterable[int]) -> list[CallResult]:
        """The CallResults of these rows (positions) of the calls table."""
        rows = list(rows)
        if self._results is not None:
            return [self._results[i] for i in rows]
        assert self._stored is not None
        return self._stored.parse(rows)

    def kpis(self) -> dict[str, float]:
        return kpis(self.calls, self.turns)

    def wer_by_persona(self) -> pd.DataFrame:
        """Per persona: how well the agent heard it in voice calls (module `wer_by_persona`)."""
        return wer_by_persona(self.calls)

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


class _Stored:
    """Where each row of a calls table was read from (file, byte offset, length), to parse a
    chosen few of them again (a report's transcripts) without holding every model."""

    def __init__(self, files: list[Path], source: np.ndarray, offset: np.ndarray, length: np.ndarray) -> None:
        self.files, self.source, self.offset, self.length = files, source, offset, length

    def parse(self, rows: Iterable[int]) -> list[CallResult]:
        out: list[CallResult] = []
        handles: dict[int, BinaryIO] = {}
        try:
            for i in rows:
                source = int(self.source[i])
                if source not in handles:
                    handles[source] = open(self.files[source], "rb")
                f = handles[source]
                f.seek(int(self.offset[i]))
                raw = f.read(int(self.length[i]))
                try:
                    out.append(CallResult.model_validate_json(raw.decode("utf-8")))
                except (ValidationError, ValueError):
                    raise RunStoreError(f"{self.files[source]} changed since its tables were read: "
                                        "load the run again") from None
        finally:
            for f in handles.values():
                f.close()
        return out


#: Stored lines read into Python lists before they are packed into Arrow arrays: the lists of a
#: few thousand calls are all that is ever held as Python objects.
CHUNK_LINES = 4096
_NULL = pa.null()
#: The tables' Arrow buffers come from the C allocator, which hands freed memory back: Arrow's
#: default pool (mimalloc) keeps what the packed chunks used, ~140 MB more at 100,000 calls.
_POOL = pa.system_memory_pool()
#: The Python values an Arrow array of each type holds as they are (None aside).
_PYTHON = {pa.float64(): {float, type(None)}, pa.int64(): {int, type(None)}, pa.bool_(): {bool, type(None)},
           pa.string(): {str, type(None)}, pa.null(): {type(None)}}


class _Table:
    """One table's columns, filled row by row: Python lists for the latest lines, packed into
    Arrow arrays (which keep None apart from NaN) every CHUNK_LINES lines."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.lists: list[list] = [[] for _ in names]
        self.chunks: list[list[pa.Array | list]] = [[] for _ in names]
        self.line: list[int] = []  # the stored line each row of the lists came from
        self.lines: list[np.ndarray] = []

    def pack(self) -> None:
        if not self.line:
            return
        for values, chunks in zip(self.lists, self.chunks, strict=True):
            try:
                packed = pa.array(values, memory_pool=_POOL)
                if not set(map(type, values)) <= _PYTHON.get(packed.type, set()):
                    # Arrow took ints (or True/False) for floats: which they were must outlive dropped rows
                    raise TypeError(f"not only {packed.type} values")
                # text as pandas keeps it (large_string), so building the table later copies nothing
                chunks.append(packed.cast(pa.large_string(), memory_pool=_POOL) if packed.type == pa.string()
                              else packed)
            except (pa.ArrowException, OverflowError, TypeError, ValueError):  # mixed kinds, huge ints: as they are
                chunks.append(list(values))
            values.clear()
        self.lines.append(np.array(self.line, dtype=np.int64))
        self.line.clear()

    def frame(self, keep: np.ndarray | None) -> pd.DataFrame:
        """The table of the rows whose line `keep` marks (all when None), with the dtypes pandas
        gives the same rows as records (calls_table and friends); no rows: every column object."""
        self.pack()
        lines = np.concatenate(self.lines) if self.lines else np.empty(0, dtype=np.int64)
        mask = None if keep is None else keep[lines]
        if not (len(lines) if mask is None else mask.any()):
            return pd.DataFrame([], columns=self.names)
        data = {}
        for name, chunks in zip(self.names, self.chunks, strict=True):
            data[name] = _column(chunks, mask)
            chunks.clear()
        return pd.DataFrame(data, columns=self.names)


def _column(chunks: list[pa.Array | list], mask: np.ndarray | None) -> object:
    """A column's packed chunks (only the rows `mask` keeps) as pandas infers the same values
    given as a Python list: only None: object; text (and None): its string dtype; numbers (and
    None): float64, int64 without None; True/False: bool, object with None. Anything else goes
    back to Python values. Each chunk is let go as soon as it is used."""
    if mask is not None:
        start = 0
        for i, chunk in enumerate(chunks):
            keep = mask[start:start + len(chunk)]
            start += len(chunk)
            if not keep.all():
                chunks[i] = (pc.filter(chunk, pa.array(keep), memory_pool=_POOL) if isinstance(chunk, pa.Array)
                             else list(compress(chunk, keep)))
    if all(isinstance(c, pa.Array) for c in chunks):
        kinds = {c.type for c in chunks if c.null_count < len(c)}  # what the values are, None aside
        if len(kinds) > 1 and kinds <= {pa.int64(), pa.float64()}:
            kinds = {pa.float64()}  # 1 beside 2.5 is 1.0, as in pandas
        if len(kinds) <= 1:
            kind = kinds.pop() if kinds else _NULL
            try:
                for i, chunk in enumerate(chunks):
                    if chunk.type != kind:
                        chunks[i] = chunk.cast(kind, memory_pool=_POOL)
                return _pandas(pa.chunked_array(chunks, type=kind))
            except pa.ArrowException:
                pass
    return [v for c in chunks for v in (c.to_pylist() if isinstance(c, pa.Array) else c)]


def _pandas(column: pa.ChunkedArray) -> object:
    kind, nulls = column.type, column.null_count
    if nulls == len(column):
        return [None] * len(column)
    if kind == pa.large_string() and _STRING != np.dtype(object):
        return pd.array(column, dtype=_STRING)
    if kind == pa.float64() or kind == pa.int64() or (kind == pa.bool_() and not nulls):
        return column.to_numpy()  # None among numbers: NaN (float64), as pandas reads them
    return column.to_pylist()


#: What pandas makes of a column of text (pandas 3: its Arrow-backed `str`; earlier: object).
_STRING = pd.Series(["text"]).dtype


#: Where each turns-table column comes from: the call (run_id ... variant), the turn's number, or the entry.
_TURN_SOURCES = {"run_id": 0, "call_id": 1, "persona_id": 2, "agent_id": 3, "style": 4, "language": 5,
                 "variant": 6, "turn": None, "speaker": "speaker", "text": "text", "said": "said",
                 "timestamp_s": "timestamp",
                 "latency_ms": "latency_ms"}


class _Columns:
    """The calls, turns and tools tables read one stored line at a time; rows of a line that a
    later result of the same call replaces are dropped at the end."""

    def __init__(self, turn_columns: Iterable[str] | None = None) -> None:
        wanted = TURN_COLUMNS if turn_columns is None else list(turn_columns)
        unknown = [c for c in wanted if c not in TURN_COLUMNS]
        if unknown:
            raise UsageError(f"turn_columns: no turns column {', '.join(map(repr, unknown))} "
                             f"(the columns: {', '.join(TURN_COLUMNS)})")
        names = [c for c in TURN_COLUMNS if c in wanted]
        self.calls, self.turns, self.tools = _Table(CALL_COLUMNS), _Table(names), _Table(TOOL_COLUMNS)
        self.turn_plan = [(column, _TURN_SOURCES[name]) for column, name in zip(self.turns.lists, names, strict=True)]
        self.source: list[int] = []
        self.offset: list[int] = []
        self.length: list[int] = []
        #: lines (0-based, over every file read) whose call has a later result
        self.replaced: list[int] = []

    def add(self, r: CallResult, info: dict[str, str], source: int, offset: int, length: int) -> int:
        line = len(self.source)
        if line and not line % CHUNK_LINES:
            for table in (self.calls, self.turns, self.tools):
                table.pack()
        self.source.append(source)
        self.offset.append(offset)
        self.length.append(length)
        for column, value in zip(self.calls.lists, _call_values(r, info), strict=True):
            column.append(value)
        self.calls.line.append(line)
        transcript = r.transcript
        if (n := len(transcript)) and self.turn_plan:
            call = (r.run_id, r.call_id, r.persona_id, r.agent_id, info.get("style", ""), info.get("language", ""),
                    r.variant)
            for column, source_of in self.turn_plan:
                if source_of is None:
                    column.extend(range(1, n + 1))
                elif isinstance(source_of, int):
                    column.extend(repeat(call[source_of], n))
                else:
                    column.extend(map(attrgetter(source_of), transcript))
            self.turns.line.extend(repeat(line, n))
        for call_record in r.tool_calls:
            for column, value in zip(self.tools.lists, _tool_values(r, call_record), strict=True):
                column.append(value)
            self.tools.line.append(line)
        return line

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
        """The three tables (as calls_table, turns_table and tools_table build them from the
        kept results) and where each kept call was stored."""
        keep = None
        where = [np.array(w, dtype=np.int64) for w in (self.source, self.offset, self.length)]
        if self.replaced:
            keep = np.ones(len(self.source), dtype=bool)
            keep[self.replaced] = False
            where = [w[keep] for w in where]
        return self.calls.frame(keep), self.turns.frame(keep), self.tools.frame(keep), *where


def _read_calls(run: Run, manifests: dict[str, RunManifest], columns: _Columns | None, source: int) -> None:
    """Every readable line of a run's calls.jsonl into `columns`, as `Run.results()` reads them
    (the latest result per call id, torn lines skipped and listed in run.unreadable_lines, with
    the same warning), but each CallResult is let go as soon as its rows are taken."""
    run.unreadable_lines = []
    latest: dict[str, int] = {}
    try:
        f = open(run.calls_path, "rb")
    except FileNotFoundError:
        return
    with f:
        offset = 0
        for number, raw in enumerate(f, 1):  # binary lines split at b"\n" only, as Run.results() does
            start = offset
            offset += len(raw)
            if not raw.strip():
                continue
            try:
                result = CallResult.model_validate_json(raw.decode("utf-8"))
            except (ValidationError, ValueError):  # UnicodeDecodeError is a ValueError
                run.unreadable_lines.append(number)
                continue
            if columns is None:
                continue
            line = columns.add(result, _info(manifests, result), source, start, len(raw))
            key = result.call_id or f"line-{number}"
            if (earlier := latest.get(key)) is not None:
                columns.replaced.append(earlier)
            latest[key] = line
    run.warn_unreadable()  # as Run.results() does


def check_lines(run: Run) -> list[int]:
    """The numbers of the lines of a run's calls.jsonl that `Run.results()` would skip (warning
    as it does), found without keeping a model: what `voicelab report` needs to know before the
    report is built (--strict), at a fraction of `run.results()`'s time and memory."""
    _read_calls(run, {}, None, 0)
    return run.unreadable_lines


def load_runs(*run_ids: str | Iterable[str], root: str | Path = DEFAULT_ROOT,
              turn_columns: Iterable[str] | None = None) -> Tables:
    """Tables for one or more stored runs (ids under `root`, or run folders): `load_runs("a")`,
    `load_runs("a", "b")` or `load_runs(["a", "b"])`. The stored lines are read straight into the
    tables' columns; `Tables.results` parses the models only when asked for. `turn_columns`:
    only these columns of the turns table (its rows stay the same), e.g. a report's
    `["run_id", "variant", "latency_ms"]`: a turn row per transcript entry is most of the memory."""
    ids = [i for item in run_ids for i in ([item] if isinstance(item, str | Path) else item)]
    if not ids:
        raise RunStoreError("load_runs needs at least one run id (see `ls runs/`)")
    columns = _Columns(turn_columns)
    store = RunStore(root)
    runs = [store.open(str(run_id)) for run_id in ids]
    manifests: dict[str, RunManifest] = {}
    paths: dict[str, Path] = {}
    for run in runs:
        manifests[run.run_id] = run.manifest
        paths[run.run_id] = run.path.resolve()
    unreadable: dict[str, str] = {}
    for source, run in enumerate(runs):
        _read_calls(run, manifests, columns, source)
        if run.unreadable_lines:
            unreadable[run.run_id] = run.unreadable_summary()
    calls, turns, tools, *where = columns.frames()
    return Tables(None, manifests, calls, turns, tools, unreadable, paths,
                  stored=_Stored([run.calls_path for run in runs], *where))
