"""Reports: execute notebooks/report.ipynb with papermill, convert it to one offline HTML file.

The notebook is the report's layout; the HTML pieces it displays are built here, so the
notebook stays thin and every piece is testable without a kernel.

A report stays small whatever the run's size (`Limits`): its figures and charts cover every call,
while the calls table lists the calls that did not succeed plus a sample of those that did, and
transcripts are a per-persona sample; each section says what it shows of how many, and the full
calls table is written beside the report (reports/<run_id>.calls.parquet and .csv).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from voicelab.lab.store import DEFAULT_ROOT, RunStore
from voicelab.lab.tables import Tables, platform_view, transcript_disagreements, turn_of
from voicelab.spec.errors import MissingDependency, ReportError
from voicelab.spec.models import CallResult, Check, ToolCallRecord, TranscriptEntry

if TYPE_CHECKING:  # the comparison's statistics (scipy, statsmodels) load only for experiments
    from voicelab.lab.compare import Side

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
REPORT_NOTEBOOK = NOTEBOOKS / "report.ipynb"
COMPARE_NOTEBOOK = NOTEBOOKS / "compare.ipynb"
DEFAULT_REPORTS = Path("reports")
#: The report needs no JavaScript (collapsing uses <details>); nbconvert's template scripts load from
#: CDNs (MathJax, mermaid), so they are removed and the page reads the same offline.
SCRIPT = re.compile(r"<script\b.*?</script>", re.I | re.S)

STYLE = """<style>
.vl-kpis{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0 16px}
.vl-kpi{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:120px;background:#fafafa}
.vl-kpi b{display:block;font-size:22px}.vl-kpi span{color:#555;font-size:12px}
.vl-table{border-collapse:collapse;font-size:13px}.vl-table td,.vl-table th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top}.vl-table th{background:#f0f0f0}
details.vl-persona{margin:6px 0}details.vl-persona>summary{cursor:pointer;font-weight:bold}
.vl-call{margin:6px 0 12px 16px}.vl-turn{margin:2px 0}.vl-agent{color:#0d47a1}.vl-user{color:#1b5e20}
.vl-pass{color:#2e7d32;font-weight:bold}.vl-fail{color:#c62828;font-weight:bold}
.vl-scroll{max-width:100%;overflow-x:auto}.vl-scroll table{margin:0}
.vl-callbody{display:flex;flex-wrap:wrap;gap:8px 24px}.vl-callbody>.vl-turns{flex:3 1 420px;min-width:0}
.vl-callbody>.vl-checks{flex:1 1 220px;min-width:0;font-size:13px}.vl-checks ul{margin:0;padding-left:18px}
.vl-lat{color:#777;font-size:11px}.vl-call audio{width:100%;max-width:520px;display:block;margin:4px 0}
.vl-turn{overflow-wrap:anywhere}.vl-tool{color:#6a1b9a;margin-left:2em}
.vl-said{color:#555;font-style:italic}.vl-cut{color:#b71c1c;font-size:90%}
.vl-regression td{background:#ffebee}.vl-better td{background:#e8f5e9}.vl-methods{color:#555;font-size:12px}
</style>"""
#: How a report carries voice recordings: embedded (Ogg Opus, self-contained), linked (relative
#: to the report, the WAV files stay in the run folder), or left out.
AUDIO_MODES = ("embed", "link", "none")


def _fmt(value: float, unit: str = "", digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}{unit}"  # NaN-safe


def _text(value: object) -> str:
    """A table cell as escaped HTML text: "" for a missing one (None, or the NaN pandas puts in a
    text column where a value is missing), so a call without an `error` beside one with it, or
    any other gap, never breaks a report."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return ""
    return html.escape(str(value))


def header_html(tables: Tables) -> str:
    """Title, what was run (agent, backend, caller, mode, latency), its sessions, what could not
    be read, and the KPI summary."""
    k = tables.kpis()
    runs = ", ".join(html.escape(r) for r in tables.manifests) or "no run"
    parts = [f"{STYLE}<h1>voicelab report: {runs}</h1>"]
    for m in tables.manifests.values():
        agents = m.agent or ", ".join(sorted({i.get("agent", "?") for i in m.persona_info.values()})) or "?"
        latency = f", {m.latency_ms:g} ms injected latency" if m.backend == "local" else ""
        parts.append(f'<p class="vl-what">{html.escape(m.run_id)}: agent {html.escape(agents)}; '
                     f"{len(m.personas)} personas x {m.repeats} repeats on the {m.backend} backend{latency}, "
                     f"{html.escape(m.caller)} caller, {m.mode} mode; state: <b>{m.state}</b></p>")
        if len(m.sessions) > 1 or any(s.state == "interrupted" for s in m.sessions):
            rows = "".join(
                f"<tr><td>{'resumed' if s.resumed else 'started'}</td><td>{html.escape(s.started_at)}</td>"
                f"<td>{html.escape(s.ended_at or '')}</td><td>{s.state}</td>"
                f"<td>{html.escape(s.stopped_by or '')}</td><td>{s.calls_stored}/{s.calls_planned}</td></tr>"
                for s in m.sessions)
            parts.append('<table class="vl-table vl-sessions"><tr><th>session</th><th>started</th><th>ended</th>'
                         f"<th>state</th><th>stopped by</th><th>calls stored / planned</th></tr>{rows}</table>")
    for run_id, problem in tables.unreadable.items():
        parts.append(f'<p class="vl-fail vl-unreadable">{html.escape(run_id)}: calls.jsonl has '
                     f"{html.escape(problem)}. They are not in this report.</p>")
    cards = [
        ("calls", str(k["calls"])),
        ("success rate", _fmt(k["success_rate"] * 100, " %")),
        ("failed their checks", str(k["failed_checks"])),
        ("could not be placed or completed", str(k["failed_calls"])),
        ("median duration", _fmt(k["median_duration_s"], " s", 1)),
        ("latency p50", _fmt(k["latency_p50_ms"], " ms")),
        ("latency p95", _fmt(k["latency_p95_ms"], " ms")),
    ]
    kpis = "".join(f'<div class="vl-kpi"><b>{v}</b><span>{html.escape(n)}</span></div>' for n, v in cards)
    return "".join(parts) + f'<div class="vl-kpis" id="vl-kpis">{kpis}</div>'


@dataclass(frozen=True)
class Limits:
    """How much of a big run a report lists call by call (its figures and charts cover every call)."""

    #: runs of up to this many calls: every call in the calls table, and every transcript
    all_calls: int = 500
    #: calls that did not succeed listed one by one (Failures and the calls table), in run order;
    #: beyond it they are counted by reason
    failed: int = 2000
    #: calls that succeeded in the calls table of a bigger run: a sample spread over personas and the run
    passed: int = 200
    #: transcripts of a bigger run: an even share per persona of this many (at least `per_persona`), failures first
    transcripts: int = 200
    per_persona: int = 4


#: What `voicelab report` shows (the notebook passes it); functions given no limits show everything.
REPORT_LIMITS = Limits()
#: The turns-table columns a report reads (kpis, the latency charts, an experiment's sides).
TURN_COLUMNS = ["run_id", "variant", "latency_ms"]


def _failed(calls: pd.DataFrame) -> np.ndarray:
    return (~calls["success"].fillna(False).astype(bool)).to_numpy() if len(calls) else np.zeros(0, dtype=bool)


def _spread(rows: np.ndarray, n: int) -> np.ndarray:
    """`n` of `rows`, evenly spaced from the first to the last (all when n >= len(rows))."""
    if n >= len(rows):
        return rows
    if n <= 0:
        return rows[:0]
    return rows[np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))]


def _shares(total: int, sizes: np.ndarray) -> np.ndarray:
    """`total` split in proportion to `sizes` (largest remainders), never more than a size."""
    exact = total * sizes / sizes.sum()
    shares = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - shares), kind="stable")[: total - shares.sum()]:
        shares[i] += 1
    return np.minimum(shares, sizes)


@dataclass(frozen=True)
class Shown:
    """Which calls a report lists one by one (positions in tables.calls), and of how many."""

    rows: np.ndarray
    failed_rows: np.ndarray
    failed_total: int
    passed_rows: np.ndarray
    passed_total: int

    @property
    def total(self) -> int:
        return self.failed_total + self.passed_total

    @property
    def everything(self) -> bool:
        return len(self.rows) == self.total


def shown_calls(tables: Tables, limits: Limits | None = None) -> Shown:
    """The calls table's rows: every call (no limits, or a run of up to `limits.all_calls`), else
    the calls that did not succeed (the first `limits.failed`) and a sample of `limits.passed`
    that did, each persona's share of them spread over the run."""
    calls = tables.calls
    failed = _failed(calls)
    bad, good = np.flatnonzero(failed), np.flatnonzero(~failed)
    if limits is None or len(calls) <= limits.all_calls:
        return Shown(np.arange(len(calls)), bad, len(bad), good, len(good))
    picked = []
    if len(good):
        personas = calls["persona_id"].to_numpy()[good]
        names, counts = np.unique(personas, return_counts=True)
        for persona, n in zip(names, _shares(min(limits.passed, len(good)), counts), strict=True):
            picked.append(_spread(good[personas == persona], int(n)))
    sample = np.sort(np.concatenate(picked)) if picked else good
    listed = bad[:limits.failed]
    return Shown(np.sort(np.concatenate([listed, sample])), listed, len(bad), sample, len(good))


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _links(files: list[Path] | None) -> str:
    """Links to the files beside the report (relative: the report and they sit in one folder)."""
    return " and ".join(f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>' for p in files or [])


def scope_html(tables: Tables, limits: Limits | None = REPORT_LIMITS, files: list[Path] | None = None) -> str:
    """What the report shows of a run too big to list call by call (nothing for a small run)."""
    shown = shown_calls(tables, limits)
    if shown.everything:
        return ""
    beside = f" The full calls table is beside this report: {_links(files)}." if files else ""
    transcripts = len(transcript_rows(tables, limits))
    return (f'<p id="vl-scope"><b>Every figure and chart below covers all {_n(shown.total, "call")}.</b> Listed '
            f"call by call: {_n(len(shown.rows), 'call')} of {shown.total:,} in the calls table "
            f"({_failed_part(shown)} and a sample of {len(shown.passed_rows):,} of the "
            f"{shown.passed_total:,} that succeeded), and {_n(transcripts, 'transcript')}.{beside} Every call's "
            "transcript is in the run's calls.jsonl (<code>voicelab.load_runs(run_id).turns</code>).</p>")


def _failed_part(shown: Shown) -> str:
    if len(shown.failed_rows) == shown.failed_total:
        return f"every one of the {_n(shown.failed_total, 'call')} that did not succeed"
    return f"the first {len(shown.failed_rows):,} of the {shown.failed_total:,} calls that did not succeed"


def failures_html(tables: Tables, limits: Limits | None = None) -> str:
    """Every call that did not succeed, with why; beyond `limits.failed` of them, the first ones
    and every one counted by reason (persona, status, end reason, failed checks, error)."""
    calls = tables.calls
    failed = _failed(calls)
    bad = calls[failed] if len(calls) else calls
    if bad.empty:
        return '<p class="vl-pass" id="vl-failures">Every call succeeded.</p>'
    cut = limits is not None and len(bad) > limits.failed
    listed = bad.iloc[:limits.failed] if cut else bad
    rows = "".join(
        f"<tr><td>{_text(r.call_id)}</td><td>{_text(r.status)}</td><td>{_text(r.end_reason)}</td>"
        f"<td>{_text(r.failed_checks)}</td><td>{_text(r.error)}</td></tr>"
        for r in listed.itertuples())
    table = (f'<table class="vl-table" id="vl-failures"><tr><th>call</th><th>status</th><th>end reason</th>'
             f"<th>failed checks</th><th>error</th></tr>{rows}</table>")
    if not cut:
        return table
    return (f'<p id="vl-failures-shown">{len(bad):,} calls did not succeed: every one is counted by reason '
            f"here, and the first {len(listed):,} (in run order) are listed below; all of them are in the full "
            f"calls table beside this report (success = False).</p>{failure_reasons_html(bad)}{table}")


def failure_reasons_html(bad: pd.DataFrame, top: int = 100) -> str:
    """Calls that did not succeed counted by persona, status, end reason, failed checks and error."""
    keys = ["persona_id", "status", "end_reason", "failed_checks", "error"]
    grouped = (bad[keys].astype(object).fillna("").assign(call_id=bad["call_id"].astype(object))
               .groupby(keys, sort=False).agg(calls=("call_id", "size"), first=("call_id", "first"))
               .reset_index().sort_values("calls", ascending=False, kind="stable"))
    rows = "".join(
        f"<tr><td>{_text(r.persona_id)}</td><td>{_text(r.status)}</td><td>{_text(r.end_reason)}</td>"
        f"<td>{_text(r.failed_checks)}</td><td>{_text(r.error)}</td><td>{r.calls:,}</td><td>{_text(r.first)}</td>"
        "</tr>" for r in grouped.head(top).itertuples())
    more = (f'<p>... and {len(grouped) - top:,} more reasons ({int(grouped["calls"].iloc[top:].sum()):,} calls), '
            "in the full calls table.</p>" if len(grouped) > top else "")
    return ('<table class="vl-table" id="vl-failure-reasons"><tr><th>persona</th><th>status</th><th>end reason</th>'
            f"<th>failed checks</th><th>error</th><th>calls</th><th>first</th></tr>{rows}</table>{more}")


#: The calls table's columns; the voice ones only when the run has voice calls.
CALL_COLUMNS = ["call_id", "style", "language", "status", "end_reason", "success", "duration_s", "turns",
                "latency_p50_ms", "latency_p95_ms", "checks_passed", "checks_total"]
VOICE_COLUMNS = ["interruptions", "talk_ratio", "wer"]


def calls_html(tables: Tables, limits: Limits | None = None, files: list[Path] | None = None) -> str:
    """One row per call, in a box that scrolls sideways instead of running off the page; with
    `limits`, of a big run only the calls `shown_calls` picks, saying so and linking `files`
    (the full table beside the report)."""
    calls = tables.calls
    cols = list(CALL_COLUMNS)
    if len(calls) and calls["platform_call_successful"].notna().any():
        cols += ["platform_call_successful", "agrees_with_platform"]  # the platform's own verdict beside ours
    if len(calls) and (calls["mode"] == "voice").any():
        cols += VOICE_COLUMNS
    if len(calls) and calls["retries"].gt(0).any():
        cols.append("retries")
    shown = shown_calls(tables, limits)
    df = calls[cols].iloc[shown.rows] if len(calls) else pd.DataFrame(columns=cols)
    table = df.to_html(index=False, classes="vl-table", table_id="vl-calls", float_format=lambda v: f"{v:.1f}",
                       na_rep="")
    beside = f"; the full table (every column) is beside this report: {_links(files)}" if files else ""
    if shown.everything:
        note = f"All {_n(shown.total, 'call')}{beside}." if files else ""
    else:
        note = (f"Showing {len(shown.rows):,} of {shown.total:,} calls: {_failed_part(shown)} and a sample of "
                f"{len(shown.passed_rows):,} of the {shown.passed_total:,} that succeeded (each persona's share, "
                f"spread over the run){beside or '; the full table is in voicelab.load_runs(run_id).calls'}.")
    note = f'<p id="vl-calls-shown">{note}</p>' if note else ""
    return f'{note}<div class="vl-scroll">{table}</div>'


def export_calls(tables: Tables, stem: str | Path) -> list[Path]:
    """The full calls table beside the report: <stem>.calls.parquet and <stem>.calls.csv."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    parquet, csv = (stem.with_name(f"{stem.name}.calls.{ext}") for ext in ("parquet", "csv"))
    tables.calls.to_parquet(parquet, index=False)
    tables.calls.to_csv(csv, index=False)
    return [parquet, csv]


def recording(r: CallResult, tables: Tables) -> Path | None:
    """Where a call's WAV is now: under its run folder's audio/ (the stored path may be relative
    to wherever the run was started)."""
    if not r.audio_path:
        return None
    folder = tables.paths.get(r.run_id or "")
    candidates = ([folder / "audio" / Path(r.audio_path).name] if folder else []) + [Path(r.audio_path)]
    return next((c for c in candidates if c.is_file()), None)


def audio_html(r: CallResult, tables: Tables, audio: str, report_dir: Path | None) -> tuple[str, int]:
    """An <audio> element for a voice call's recording, and how many bytes it adds to the page."""
    if audio == "none" or r.mode != "voice":
        return "", 0
    path = recording(r, tables)
    if path is None:
        return '<div class="vl-lat">recording not found</div>', 0
    if audio == "link":
        src = html.escape(Path(os.path.relpath(path, report_dir or Path.cwd())).as_posix())
        return f'<audio controls preload="metadata" src="{src}"></audio>', 0
    from voicelab.audio.wav import compressed

    data = compressed(path)
    size = f"{len(data) / 1024:.0f} KB Ogg Opus, from {path.stat().st_size / 1024:.0f} KB WAV"
    src = "data:audio/ogg;codecs=opus;base64," + base64.b64encode(data).decode()
    return (f'<audio controls preload="metadata" src="{src}"></audio><div class="vl-lat">{size}</div>',
            len(src))


def tools_html(tables: Tables) -> str:
    """Per persona: the tools called (and how often), those that failed, and the agent's tools
    that were never called."""
    summary = tables.tools_summary()
    if summary.empty or not (summary["tools_called"].astype(bool) | summary["never_called"].astype(bool)).any():
        return '<p id="vl-tools">No agent in this run has tools, and none were called.</p>'
    table = summary.to_html(index=False, classes="vl-table", table_id="vl-tools", na_rep="")
    return f'<div class="vl-scroll">{table}</div>'


#: At most this many calls' disagreeing turns are listed (the Failures section counts them all).
DISAGREEMENT_CALLS = 200
_ODD_ONE_OUT = {"live": "the live events", "stored": "the stored conversation",
                "audio": "the audio (or its recognition)"}


def disagreements_html(tables: Tables, max_calls: int = DISAGREEMENT_CALLS) -> str:
    """`transcripts_agree`: per agent turn where the accounts of a call disagree, the live text,
    the stored text, voicelab's recognition of the audio, their word error rates and which account
    is the odd one out, so an agent error (the texts differ, or the audio says something else) is
    told from a transcription error. Lists the calls whose check failed (the first `max_calls`),
    at the check's default thresholds; a persona's own thresholds decide its check, so a call its
    stricter threshold failed shows the check's own words instead."""
    calls = tables.calls
    failing = np.flatnonzero(calls["failed_checks"].fillna("").str.contains("transcripts_agree", regex=False)
                             .to_numpy()) if len(calls) else np.array([], dtype=int)
    if not len(failing):
        return ('<p id="vl-disagreements">No call failed <code>transcripts_agree</code>: where it ran, the live '
                "events, the stored conversation and the recorded audio told every agent turn alike.</p>")
    rows = []
    for r in tables.results_at(failing[:max_calls].tolist()):
        table = transcript_disagreements([r])
        call = html.escape(str(r.call_id))
        if table.empty:
            detail = next((c.detail for c in r.checks if c.name == "transcripts_agree"), "")
            rows.append(f"<tr><td>{call}</td><td></td><td colspan=6>{html.escape(detail)}</td><td></td></tr>")
            continue
        for t in table.itertuples():
            def num(v: object) -> str:
                return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
            turn = t.agent_turn if pd.notna(t.agent_turn) else f"stored {t.stored_turn}"
            rows.append(
                f"<tr><td>{call}</td><td>{html.escape(str(turn))}</td><td>{_text(t.live)}</td>"
                f"<td>{_text(t.stored)}</td><td>{_text(t.audio)}</td><td>{num(t.text_wer)}</td>"
                f"<td>{num(t.audio_wer)}</td><td>{html.escape(t.detail)}</td>"
                f"<td>{html.escape(_ODD_ONE_OUT.get(t.odd_one_out or '', 'cannot tell'))}</td></tr>")
    shown = "" if len(failing) <= max_calls else f" (the first {max_calls:,} of {len(failing):,} calls)"
    head = ("<tr><th>call</th><th>agent turn</th><th>live events</th><th>stored conversation</th>"
            "<th>audio, as voicelab heard it</th><th>WER live/stored</th><th>WER audio</th><th>what differs</th>"
            "<th>odd one out</th></tr>")
    return (f'<p>{len(failing):,} call{"s" if len(failing) != 1 else ""} failed <code>transcripts_agree</code>{shown}. '
            "When two accounts agree, the third is the one in error: the live events (the client's transcript), the "
            "stored conversation (the backend's record), or the audio, where the agent said something else than its "
            "text or voicelab's recogniser misheard it (a recogniser error is usually a partial one; WER at the "
            "default thresholds, 0.25 between the texts and 1.0 for the audio).</p>"
            f'<div class="vl-scroll"><table class="vl-table" id="vl-disagreements">{head}{"".join(rows)}</table></div>')


def conditions_html(tables: Tables) -> str:
    """Voice calls per audio condition (success, WER, latency, time to first audio), or a line
    saying there are none."""
    from voicelab.lab.tables import by_condition

    table = by_condition(tables.calls)
    if table.empty:
        return '<p id="vl-conditions">No voice calls in this run.</p>'
    shown = table.to_html(index=False, classes="vl-table", table_id="vl-conditions", na_rep="",
                          float_format=lambda v: f"{v:.2f}")
    return f'<div class="vl-scroll">{shown}</div>'


def workers_html(tables: Tables) -> str:
    """Calls per worker of a `--cluster` run (`lab.tables.by_worker`), or a line saying the run's
    calls were placed in one process."""
    from voicelab.lab.tables import by_worker

    table = by_worker(tables.calls)
    if table.empty:
        return '<p id="vl-workers">All calls were placed by one process (no --cluster).</p>'
    shown = table.to_html(index=False, classes="vl-table", table_id="vl-workers", na_rep="",
                          float_format=lambda v: f"{v:.2f}")
    return f'<div class="vl-scroll">{shown}</div>'


def condition_figures(tables: Tables) -> list:
    """The by-condition chart, when the run has voice calls under more than one condition."""
    from voicelab.lab.tables import by_condition
    from voicelab.report import charts

    table = by_condition(tables.calls)
    return [charts.by_condition(table)] if len(table) > 1 else []


def _tool_html(call: ToolCallRecord) -> str:
    args = ", ".join(f"{k}={v}" for k, v in call.args.items())
    answer = "" if call.result is None else json.dumps(call.result, ensure_ascii=False)
    took = f" ({call.latency_ms:.0f} ms)" if call.latency_ms is not None else " (no answer)"
    kind = "vl-fail" if call.is_error else "vl-lat"
    return (f'<div class="vl-turn vl-tool">{call.at:6.2f}s <b>tool</b> {html.escape(call.tool)}({html.escape(args)})'
            f' <span class="{kind}">{"error: " if call.is_error else "→ "}{html.escape(answer[:300])}{took}</span>'
            "</div>")


def _turn_html(t: TranscriptEntry) -> str:
    """One turn. A voice caller turn shows what the agent heard, and what the persona said where
    that differs (so a recognition error is not taken for the agent's); an agent turn the caller
    cut off is marked, with what the agent meant to say."""
    latency = f' <span class="vl-lat">({t.latency_ms:.0f} ms)</span>' if t.latency_ms is not None else ""
    text = html.escape(t.text) if t.text or t.said is None else "<i>(not heard)</i>"
    extra = ""
    if t.said is not None and t.said.strip().lower() != t.text.strip().lower():
        extra += f' <span class="vl-said">said: {html.escape(t.said)}</span>'
    if t.interrupted:
        meant = f": meant {html.escape(t.original_text)}" if t.original_text and t.original_text != t.text else ""
        extra += f' <span class="vl-cut">cut off by the caller{meant}</span>'
    heard = " heard" if t.said is not None else ""
    return (f'<div class="vl-turn vl-{t.speaker}">{t.timestamp:6.2f}s <b>{t.speaker}</b>{heard}{latency}: '
            f"{text}{extra}</div>")


def _check_detail_html(check: Check) -> str:
    """A check's detail; a replay's differences (spec/replay.py: one clause per difference, per
    caller turn) as a list, so the report reads turn by turn what changed since the recording."""
    if check.name.startswith("recording: ") and "; " in check.detail:
        items = "".join(f"<li>{html.escape(part)}</li>" for part in check.detail.split("; "))
        return f'<ul class="vl-replay">{items}</ul>'
    return html.escape(check.detail)


def _call_html(r: CallResult, tables: Tables, audio: str, report_dir: Path | None) -> tuple[str, int]:
    verdict = '<span class="vl-pass">PASS</span>' if r.success else '<span class="vl-fail">FAIL</span>'
    after: dict[int, list[str]] = {}  # each tool call after the turn it belongs to
    for call in r.tool_calls:
        after.setdefault(turn_of(r, call), []).append(_tool_html(call))
    turns = "".join(after.get(0, [])) + "".join(
        _turn_html(t) + "".join(after.get(index, [])) for index, t in enumerate(r.transcript, 1))
    failed = '<b class="vl-fail">FAIL</b>'
    checks = "".join(
        f"<li>{'pass' if c.passed else failed} {html.escape(c.name)}: {_check_detail_html(c)}</li>"
        for c in r.checks)
    error = f"<div>error: {html.escape(r.error)}</div>" if r.error else ""
    verdict_of_platform, why, _ = platform_view(r)
    if verdict_of_platform:
        error += f"<div>platform verdict: {html.escape(verdict_of_platform)}. {html.escape(why or '')}</div>"
    player, size = audio_html(r, tables, audio, report_dir)
    m = r.metrics
    voice = (f", {m.interruptions} interruptions, talk ratio {m.talk_ratio}, WER "
             f"{'n/a' if m.wer is None else f'{m.wer:.2f}'}") if r.mode == "voice" else ""
    return (f'<div class="vl-call" id="call-{html.escape(str(r.call_id))}"><div>{verdict} '
            f"{html.escape(str(r.call_id))}: {r.end_reason}, {r.duration_seconds:.1f} s{voice}</div>{error}{player}"
            f'<div class="vl-callbody"><div class="vl-turns">{turns}</div>'
            f'<div class="vl-checks"><b>checks</b><ul>{checks or "<li>none</li>"}</ul></div></div></div>', size)


def transcript_rows(tables: Tables, limits: Limits | None = None) -> np.ndarray:
    """Which calls' transcripts a report shows (positions in tables.calls, in run order): all of
    them without limits or in a run of up to `limits.all_calls`; else per persona an even share
    of `limits.transcripts` (at least `limits.per_persona`), those that did not succeed first (at
    most three quarters of the share while there are calls that succeeded to show), each kind
    spread over the run."""
    calls = tables.calls
    if limits is None or len(calls) <= limits.all_calls:
        return np.arange(len(calls))
    failed = _failed(calls)
    personas = calls["persona_id"].to_numpy()
    names = pd.unique(personas)
    share = max(limits.per_persona, math.ceil(limits.transcripts / max(1, len(names))))
    picked = []
    for persona in names:
        mine = personas == persona
        bad, good = np.flatnonzero(mine & failed), np.flatnonzero(mine & ~failed)
        n_bad = min(len(bad), share - min(len(good), share // 4))
        picked += [_spread(bad, n_bad), _spread(good, share - n_bad)]
    return np.sort(np.concatenate(picked))


def transcripts_html(tables: Tables, audio: str = "embed", report_dir: str | Path | None = None,
                     limits: Limits | None = None) -> str:
    """Every call, grouped per persona (HTML <details>, no script needed): transcript with each
    agent turn's latency, the call's checks beside it, and for voice calls the recording
    (`audio`: embed | link | none; links are relative to `report_dir`, where the report goes).
    With `limits`, a big run's transcripts are the sample `transcript_rows` picks, saying so."""
    if audio not in AUDIO_MODES:
        raise ReportError(f"audio {audio!r}: use one of {', '.join(AUDIO_MODES)}")
    folder = Path(report_dir).resolve() if report_dir else None
    calls = tables.calls
    rows = transcript_rows(tables, limits)
    everything = len(rows) == len(calls)
    by_persona: dict[str, list[CallResult]] = {}
    for r in tables.results if everything else tables.results_at(rows.tolist()):
        by_persona.setdefault(r.persona_id, []).append(r)
    totals = calls.groupby("persona_id", sort=False)["success"].agg(["size", "sum"]) if len(calls) else None
    from voicelab.lab.tables import wer_by_persona

    # voice: how well the agent heard each persona, over all its calls (a misheard persona fails
    # for the recogniser, not the flow)
    heard = {row.persona_id: row for row in wer_by_persona(calls).itertuples()}
    parts, embedded, players = [], 0, 0
    for persona_id in sorted(by_persona):
        mine = by_persona[persona_id]
        passed, total = (sum(r.success for r in mine), len(mine)) if everything else \
            (int(totals.loc[persona_id, "sum"]), int(totals.loc[persona_id, "size"]))
        bodies = []
        for r in mine:
            body, size = _call_html(r, tables, audio, folder)
            bodies.append(body)
            embedded += size
            players += "<audio" in body
        sample = "" if everything else (
            f" (transcripts of {len(mine):,}: {sum(not r.success for r in mine):,} that did not succeed, "
            f"{sum(r.success for r in mine):,} that did)")
        wer = heard.get(persona_id)
        wer_note = (f", WER of what the agent heard {wer.wer_mean:.2f} (worst call {wer.wer_max:.2f})"
                    if wer is not None else "")
        parts.append(f'<details class="vl-persona"><summary>{html.escape(persona_id)}: '
                     f"{passed}/{total} passed{wer_note}{sample}</summary>{''.join(bodies)}</details>")
    note = ""
    if not everything:
        note = (f'<p id="vl-transcripts-shown">Showing the transcripts of {len(rows):,} of {len(calls):,} calls: '
                "per persona an even share, those that did not succeed first, spread over the run. Every "
                "call's transcript is in the run's calls.jsonl (<code>voicelab.load_runs(run_id).turns</code>).</p>")
    if players:
        how = {"embed": f"embedded as Ogg Opus, {embedded / 1e6:.1f} MB of this page",
               "link": "linked to the WAV files in the run folder (keep the report beside runs/)"}[audio]
        note += f'<p id="vl-recordings">Recordings of {players} voice calls, {how}.</p>'
    return f'{note}<div id="vl-transcripts">{"".join(parts)}</div>'


def build_report(run_id: str, *, runs_root: str | Path = DEFAULT_ROOT,
                 reports_dir: str | Path = DEFAULT_REPORTS, log_output: bool = False, audio: str = "embed") -> Path:
    """Execute the report notebook for a stored run and write reports/<run_id>.html, with the full
    calls table beside it (reports/<run_id>.calls.parquet and .csv); voice recordings are embedded,
    linked or left out (`audio`, see AUDIO_MODES)."""
    if audio not in AUDIO_MODES:
        raise ReportError(f"audio {audio!r}: use one of {', '.join(AUDIO_MODES)}")
    run = RunStore(runs_root).open(run_id)
    folder = run.path.resolve()
    return _render(REPORT_NOTEBOOK, folder / "report.ipynb", Path(reports_dir) / f"{run.run_id}.html",
                   {"run_dir": str(folder), "audio": audio, "report_dir": str(Path(reports_dir).resolve()),
                    "report_name": run.run_id},
                   kernel_cwd=folder, log_output=log_output)


def build_comparison(base: str, candidate: str, *, runs_root: str | Path = DEFAULT_ROOT,
                     reports_dir: str | Path = DEFAULT_REPORTS, latency_margin_ms: float = 100.0) -> Path:
    """Execute notebooks/compare.ipynb for two stored runs or variants (`RUN` or `RUN:VARIANT`)
    and write reports/compare-<base>-vs-<candidate>.html."""
    name = f"compare-{base}-vs-{candidate}".replace(":", "_").replace("/", "_")
    out = Path(reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _render(COMPARE_NOTEBOOK, out / f"{name}.ipynb", out / f"{name}.html",
                   {"base": base, "candidate": candidate, "runs_root": str(Path(runs_root).resolve()),
                    "latency_margin_ms": latency_margin_ms}, kernel_cwd=out.resolve())


def _render(notebook: Path, executed: Path, html_path: Path, parameters: dict, *, kernel_cwd: Path,
            log_output: bool = False) -> Path:
    """Execute a report notebook with papermill and convert it to one offline HTML file.

    Every path is absolute and the notebook gets what it reads as parameters. The kernel starts
    in `kernel_cwd` through nbclient's `resources` (the working directory of the kernel process
    alone): papermill's own `cwd=` would os.chdir this whole process for the notebook's run, and
    a call being stored by another thread of it (the REST service) would then miss its relative
    `runs/<id>/calls.jsonl`."""
    try:
        import papermill
        from nbconvert import HTMLExporter
    except ImportError as exc:  # pragma: no cover - both are core dependencies
        raise MissingDependency(f"{exc.name} is needed for reports: pip install -e . (or pip install {exc.name})") \
            from None
    if not notebook.exists():
        raise ReportError(f"the report notebook {notebook} is missing; reinstall voicelab from its repo")
    logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        papermill.execute_notebook(
            str(notebook), str(executed.resolve()), parameters=parameters,
            kernel_name="python3", progress_bar=False, log_output=log_output,
            resources={"metadata": {"path": str(kernel_cwd.resolve())}},
            # no kernel chatter in the terminal, not even its complaint when a stop signal closes its
            # sockets mid-cell (the notebook's own errors still come back through papermill)
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except papermill.PapermillExecutionError as exc:
        raise ReportError(f"the report notebook failed ({exc.ename}: {exc.evalue}); the partly executed "
                            f"notebook with the full error is {executed}") from None
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_filename(str(executed))
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(SCRIPT.sub("", body), encoding="utf-8")
    return html_path


# --------------------------------------------------------------------------- comparisons


def _num(v: object, fmt: str) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)


def comparison_html(base: Side, cand: Side, latency_margin_ms: float = 100.0) -> str:
    """Candidate against baseline: the decision and its evidence, per persona pass rates with
    intervals and exact p-values (regressions and newly failing checks highlighted), latency and
    duration with bootstrap intervals, and what more calls would tell."""
    from voicelab.lab import stats
    from voicelab.lab.compare import decide, latency_comparison, persona_comparison

    decision = decide(base, cand, latency_margin_ms)
    verdict = (f'<p class="vl-fail">{html.escape(cand.label)} is worse than {html.escape(base.label)}: '
               f"{html.escape('; '.join(decision.reasons))}</p>" if decision.worse else
               f'<p class="vl-pass">{html.escape(cand.label)} is not worse than {html.escape(base.label)} '
               "(no significant drop in pass rate, overall or for any persona; no persona failing every call "
               f"it passed; p95 latency within {latency_margin_ms:.0f} ms).</p>")
    evidence = "".join(f"<li>{html.escape(line)}</li>" for line in decision.evidence)
    rows = []
    for r in persona_comparison(base, cand).itertuples():
        css = ' class="vl-regression"' if r.regression or _text(r.newly_failing) else (
            ' class="vl-better"' if r.significant and r.difference > 0 else "")
        worse = ("yes: every call that passed now fails" if r.consistently_worse else "yes") if r.regression else "no"
        rows.append(
            f"<tr{css}><td>{_text(r.persona_id)}</td>"
            f"<td>{r.base_passed}/{r.base_calls} ({_num(r.base_rate, '.0%')})</td>"
            f"<td>{r.cand_passed}/{r.cand_calls} ({_num(r.cand_rate, '.0%')})</td>"
            f"<td>{_num(r.difference * 100 if r.difference == r.difference else None, '+.0f')}</td>"
            f"<td>{_num(r.p_value, '.3g')}</td><td>{_num(r.p_worse_holm, '.3g')}</td><td>{worse}</td>"
            f"<td>{_text(r.newly_failing)}</td><td>{html.escape(stats.needed_text(r.calls_needed))}</td></tr>")
    personas = ('<table class="vl-table vl-compare"><tr><th>persona</th><th>baseline passed</th>'
                "<th>candidate passed</th><th>difference (points)</th><th>Fisher p (two-sided)</th>"
                "<th>p candidate worse (one-sided, Holm-adjusted)</th><th>worse (fails the gate)</th>"
                "<th>checks failing only in the candidate</th><th>calls per side to tell (exact, 80% power)</th>"
                "</tr>" + "".join(rows) + "</table>")
    lat = latency_comparison(base, cand)
    lat_rows = "".join(
        f"<tr><td>{html.escape(r.measure)}</td><td>{_num(r.base, '.1f')}</td><td>{_num(r.candidate, '.1f')}</td>"
        f"<td>{_num(r.difference, '+.1f')}</td><td>[{_num(r.ci_low, '+.1f')}, {_num(r.ci_high, '+.1f')}]</td></tr>"
        for r in lat.itertuples())
    latency = ('<table class="vl-table vl-latency"><tr><th>measure</th><th>baseline</th><th>candidate</th>'
               f"<th>difference</th><th>95% bootstrap CI</th></tr>{lat_rows}</table>")
    methods = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in stats.METHODS.items())
    return (f'<div class="vl-comparison"><h3>{html.escape(cand.label)} vs {html.escape(base.label)}</h3>'
            f"{verdict}<ul>{evidence}</ul>{personas}{latency}"
            f'<ul class="vl-methods">{methods}</ul></div>')


def flaky_html(sides: list[Side]) -> str:
    from voicelab.lab.compare import flaky

    table = flaky(sides)
    if table.empty:
        return '<p id="vl-flaky">No flaky personas: each passed always or never within a variant.</p>'
    rows = "".join(f"<tr><td>{_text(r.side)}</td><td>{_text(r.persona_id)}</td>"
                   f"<td>{r.passed}/{r.calls} ({r.rate:.0%})</td></tr>" for r in table.itertuples())
    return ('<table class="vl-table" id="vl-flaky"><tr><th>variant</th><th>persona</th><th>passed</th></tr>'
            f"{rows}</table>")


def success_html(sides: list[Side]) -> str:
    from voicelab.lab.compare import success_table

    table = success_table(sides)
    rows = "".join(
        f"<tr><td>{_text(r.side)}</td><td>{_text(r.persona_id)}</td><td>{r.passed}/{r.calls}</td>"
        f"<td>{_num(r.rate, '.0%')}</td><td>[{_num(r.ci_low, '.0%')}, {_num(r.ci_high, '.0%')}]</td></tr>"
        for r in table.itertuples())
    return ('<table class="vl-table" id="vl-success"><tr><th>variant</th><th>persona</th><th>passed</th>'
            f"<th>rate</th><th>95% Wilson interval</th></tr>{rows}</table>")


def experiment_html(tables: Tables) -> str:
    """An experiment run's comparison: every variant against the first (the baseline)."""
    from voicelab.lab.compare import variant_sides

    sides = variant_sides(tables)
    parts = [success_html(sides)]
    parts += [comparison_html(sides[0], other) for other in sides[1:]]
    parts.append("<h3>Flaky personas</h3>" + flaky_html(sides))
    return '<div id="vl-experiment">' + "".join(parts) + "</div>"


def variants_html(tables: Tables) -> str:
    """The variants section of an experiment's report (nothing for a plain batch); a mutation
    run's mutation score instead."""
    manifests = list(tables.manifests.values())
    if len(manifests) != 1 or not manifests[0].variants:
        return ""
    if manifests[0].kind == "mutation":
        return mutation_html(tables)
    return "<h2>Variants compared</h2>" + experiment_html(tables)


def mutation_html(tables: Tables) -> str:
    """Mutation score, then every mutant, survivors first, with what it changed and what would
    catch it (or which personas and checks did); mutants whose calls could not run apart, with why."""
    from voicelab.lab.mutate import score

    (run_id,) = tables.manifests
    result = score(str(tables.paths[run_id]))
    rows = []
    for m in sorted(result.mutants, key=lambda m: m.caught):
        caught = "; ".join(f"{p}: {', '.join(c)}" for p, c in m.caught_by.items())
        rows.append(f'<tr class="{"vl-better" if m.caught else "vl-regression"}"><td>{_text(m.id)}</td>'
                    f"<td>{'caught' if m.caught else 'SURVIVED'}</td><td>{_text(m.change)}</td>"
                    f"<td>{_text(caught if m.caught else 'would be caught by: ' + m.catch_hint)}</td></tr>")
    rows += [f"<tr><td>{_text(m.id)}</td><td>not run</td><td>{_text(m.change)}</td><td>{_text(m.not_run)}</td></tr>"
             for m in result.invalid]
    weak = (f"<p>Personas failing against the original too (they catch nothing): "
            f"{_text(', '.join(result.failing_original))}</p>" if result.failing_original else "")
    n = len(result.invalid)
    invalid = (f'<p id="vl-mutation-not-run">{n} mutant{"s are" if n != 1 else " is"} not in the score: none of '
               "the calls against it ran (closed at connection or ended by an error), so no check could notice "
               "the change.</p>" if n else "")
    shown = "n/a" if result.score != result.score else f"{result.score:.2f}"
    return (f'<h2>Mutation score</h2><p id="vl-mutation-score"><b>{shown}</b>: {result.caught} of '
            f"{len(result.mutants)} mutants of {_text(result.agent)} caught by at least one failing check "
            f"({result.calls} calls).</p>{invalid}{weak}"
            '<table class="vl-table" id="vl-mutants"><tr><th>mutant</th><th>result</th><th>change</th>'
            f"<th>caught by</th></tr>{''.join(rows)}</table>")


def variant_figures(tables: Tables) -> list:
    """An experiment's charts: pass rate per persona and variant, latency per variant (none for
    a plain batch or a mutation run)."""
    manifests = list(tables.manifests.values())
    if len(manifests) != 1 or not manifests[0].variants or manifests[0].kind == "mutation":
        return []
    from voicelab.lab.compare import variant_sides

    return comparison_figures(variant_sides(tables))


def comparison_figures(sides: list[Side]) -> list:
    from voicelab.lab.compare import distinct, success_table
    from voicelab.report import charts

    sides = distinct(sides)  # a run compared with itself: two labels, two bars
    return [charts.success_by_side(success_table(sides)),
            charts.latency_by_side({s.label: s.turns["latency_ms"] for s in sides})]
