"""Reports: execute notebooks/report.ipynb with papermill, convert it to one offline HTML file.

The notebook is the report's layout; the HTML pieces it displays are built here, so the
notebook stays thin and every piece is testable without a kernel.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
from pathlib import Path

import pandas as pd

from voicelab.audio.wav import compressed
from voicelab.lab import stats
from voicelab.lab.compare import (
    Side,
    decide,
    distinct,
    flaky,
    latency_comparison,
    persona_comparison,
    success_table,
    variant_sides,
)
from voicelab.lab.store import DEFAULT_ROOT, RunStore
from voicelab.lab.tables import Tables, platform_view, turn_of
from voicelab.spec.errors import MissingDependency, ReportError
from voicelab.spec.models import CallResult, ToolCallRecord, TranscriptEntry

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


def failures_html(tables: Tables) -> str:
    """Every call that did not succeed, with why."""
    calls = tables.calls
    bad = calls[~calls["success"].fillna(False).astype(bool)] if len(calls) else calls
    if bad.empty:
        return '<p class="vl-pass" id="vl-failures">Every call succeeded.</p>'
    rows = "".join(
        f"<tr><td>{_text(r.call_id)}</td><td>{_text(r.status)}</td><td>{_text(r.end_reason)}</td>"
        f"<td>{_text(r.failed_checks)}</td><td>{_text(r.error)}</td></tr>"
        for r in bad.itertuples())
    return (f'<table class="vl-table" id="vl-failures"><tr><th>call</th><th>status</th><th>end reason</th>'
            f"<th>failed checks</th><th>error</th></tr>{rows}</table>")


#: The calls table's columns; the voice ones only when the run has voice calls.
CALL_COLUMNS = ["call_id", "style", "language", "status", "end_reason", "success", "duration_s", "turns",
                "latency_p50_ms", "latency_p95_ms", "checks_passed", "checks_total"]
VOICE_COLUMNS = ["interruptions", "talk_ratio", "wer"]


def calls_html(tables: Tables) -> str:
    """One row per call, in a box that scrolls sideways instead of running off the page."""
    calls = tables.calls
    cols = list(CALL_COLUMNS)
    if len(calls) and calls["platform_call_successful"].notna().any():
        cols += ["platform_call_successful", "agrees_with_platform"]  # the platform's own verdict beside ours
    if len(calls) and (calls["mode"] == "voice").any():
        cols += VOICE_COLUMNS
    if len(calls) and calls["retries"].gt(0).any():
        cols.append("retries")
    df = calls[cols].copy() if len(calls) else pd.DataFrame(columns=cols)
    table = df.to_html(index=False, classes="vl-table", table_id="vl-calls", float_format=lambda v: f"{v:.1f}",
                       na_rep="")
    return f'<div class="vl-scroll">{table}</div>'


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


def _call_html(r: CallResult, tables: Tables, audio: str, report_dir: Path | None) -> tuple[str, int]:
    verdict = '<span class="vl-pass">PASS</span>' if r.success else '<span class="vl-fail">FAIL</span>'
    after: dict[int, list[str]] = {}  # each tool call after the turn it belongs to
    for call in r.tool_calls:
        after.setdefault(turn_of(r, call), []).append(_tool_html(call))
    turns = "".join(after.get(0, [])) + "".join(
        _turn_html(t) + "".join(after.get(index, [])) for index, t in enumerate(r.transcript, 1))
    failed = '<b class="vl-fail">FAIL</b>'
    checks = "".join(
        f"<li>{'pass' if c.passed else failed} {html.escape(c.name)}: {html.escape(c.detail)}</li>"
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


def transcripts_html(tables: Tables, audio: str = "embed", report_dir: str | Path | None = None) -> str:
    """Every call, grouped per persona (HTML <details>, no script needed): transcript with each
    agent turn's latency, the call's checks beside it, and for voice calls the recording
    (`audio`: embed | link | none; links are relative to `report_dir`, where the report goes)."""
    if audio not in AUDIO_MODES:
        raise ReportError(f"audio {audio!r}: use one of {', '.join(AUDIO_MODES)}")
    folder = Path(report_dir).resolve() if report_dir else None
    by_persona: dict[str, list[CallResult]] = {}
    for r in tables.results:
        by_persona.setdefault(r.persona_id, []).append(r)
    parts, embedded, players = [], 0, 0
    for persona_id in sorted(by_persona):
        calls = by_persona[persona_id]
        passed = sum(r.success for r in calls)
        bodies = []
        for r in calls:
            body, size = _call_html(r, tables, audio, folder)
            bodies.append(body)
            embedded += size
            players += "<audio" in body
        parts.append(f'<details class="vl-persona"><summary>{html.escape(persona_id)}: '
                     f"{passed}/{len(calls)} passed</summary>{''.join(bodies)}</details>")
    note = ""
    if players:
        how = {"embed": f"embedded as Ogg Opus, {embedded / 1e6:.1f} MB of this page",
               "link": "linked to the WAV files in the run folder (keep the report beside runs/)"}[audio]
        note = f'<p id="vl-recordings">Recordings of {players} voice calls, {how}.</p>'
    return f'{note}<div id="vl-transcripts">{"".join(parts)}</div>'


def build_report(run_id: str, *, runs_root: str | Path = DEFAULT_ROOT,
                 reports_dir: str | Path = DEFAULT_REPORTS, log_output: bool = False, audio: str = "embed") -> Path:
    """Execute the report notebook for a stored run and write reports/<run_id>.html; voice
    recordings are embedded, linked or left out (`audio`, see AUDIO_MODES)."""
    if audio not in AUDIO_MODES:
        raise ReportError(f"audio {audio!r}: use one of {', '.join(AUDIO_MODES)}")
    run = RunStore(runs_root).open(run_id)
    folder = run.path.resolve()
    return _render(REPORT_NOTEBOOK, folder / "report.ipynb", Path(reports_dir) / f"{run.run_id}.html",
                   {"run_dir": str(folder), "audio": audio, "report_dir": str(Path(reports_dir).resolve())},
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
    table = flaky(sides)
    if table.empty:
        return '<p id="vl-flaky">No flaky personas: each passed always or never within a variant.</p>'
    rows = "".join(f"<tr><td>{_text(r.side)}</td><td>{_text(r.persona_id)}</td>"
                   f"<td>{r.passed}/{r.calls} ({r.rate:.0%})</td></tr>" for r in table.itertuples())
    return ('<table class="vl-table" id="vl-flaky"><tr><th>variant</th><th>persona</th><th>passed</th></tr>'
            f"{rows}</table>")


def success_html(sides: list[Side]) -> str:
    table = success_table(sides)
    rows = "".join(
        f"<tr><td>{_text(r.side)}</td><td>{_text(r.persona_id)}</td><td>{r.passed}/{r.calls}</td>"
        f"<td>{_num(r.rate, '.0%')}</td><td>[{_num(r.ci_low, '.0%')}, {_num(r.ci_high, '.0%')}]</td></tr>"
        for r in table.itertuples())
    return ('<table class="vl-table" id="vl-success"><tr><th>variant</th><th>persona</th><th>passed</th>'
            f"<th>rate</th><th>95% Wilson interval</th></tr>{rows}</table>")


def experiment_html(tables: Tables) -> str:
    """An experiment run's comparison: every variant against the first (the baseline)."""
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
    return comparison_figures(variant_sides(tables))


def comparison_figures(sides: list[Side]) -> list:
    from voicelab.report import charts

    sides = distinct(sides)  # a run compared with itself: two labels, two bars
    return [charts.success_by_side(success_table(sides)),
            charts.latency_by_side({s.label: s.turns["latency_ms"] for s in sides})]
