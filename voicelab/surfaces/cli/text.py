"""What the command line prints of a finished run: one screen of KPIs and a line per persona
(shared by `run`, `experiment` and `mutate`, so every command sums up a run the same way)."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from voicelab.lab.gates import SummaryRow
    from voicelab.spec.models import CallResult


def summary_text(tables) -> str:  # noqa: ANN001 - voicelab.lab.tables.Tables
    """One screen: KPIs, then one line per persona (per variant and persona in an experiment)."""
    from voicelab.lab.gates import SummaryRow

    calls = tables.calls
    rows: list[SummaryRow] = []
    by_variant = False
    if len(calls):
        by_variant = bool(calls["variant"].notna().any())  # experiments: one line per variant and persona
        keys = ["variant", "persona_id"] if by_variant else ["persona_id"]
        for key, group in calls.groupby(keys):
            name = "/".join(key) if by_variant else (key[0] if isinstance(key, tuple) else key)
            failed = sorted({n for cell in group["failed_checks"] for n in cell.split(", ") if n})
            # summed as summary_rows_of sums them, so both screens print the same digits
            wers = [float(w) for w in group["wer"].dropna().tolist()] if "wer" in group else []
            rows.append(SummaryRow(name, int(group["success"].sum()), len(group), group["duration_s"].median(),
                                   failed, sum(wers) / len(wers) if wers else None))
    return _screen(tables.kpis(), rows, by_variant)


def summary_text_of(results: list[CallResult]) -> str:
    """`summary_text` of a run without variants, from its results (no pandas: voicelab/lab/gates.py)."""
    from voicelab.lab.gates import kpis_of, summary_rows_of

    return _screen(kpis_of(results), summary_rows_of(results), False)


def _screen(k: Mapping[str, float], rows: list[SummaryRow], by_variant: bool) -> str:
    latency = (f"latency p50 {k['latency_p50_ms']:.0f} ms, p95 {k['latency_p95_ms']:.0f} ms"
               if k["latency_p50_ms"] == k["latency_p50_ms"] else "no latency measured")  # NaN: none
    rate_text = f" ({k['success_rate']:.0%})" if k["calls"] else ""
    lines = [f"{k['calls']} calls: {k['passed']} passed{rate_text}, {k['failed_checks']} failed their checks, "
             f"{k['failed_calls']} could not be placed or completed; median duration "
             f"{k['median_duration_s']:.1f} s; {latency}", ""]
    if k["calls"]:
        width = 44 if by_variant else 32
        voice = any(row.wer is not None for row in rows)  # what the agent heard: voice calls only
        lines.append(f"  {'variant/persona' if by_variant else 'persona':{width}} {'passed':>7} {'median s':>9}  "
                     + ("  WER  " if voice else "") + "failed checks")
        for row in rows:
            wer = (f"{row.wer:5.2f}  " if row.wer is not None else "    -  ") if voice else ""
            lines.append(f"  {row.name[:width]:{width}} {row.passed:>3}/{row.calls:<3} "
                         f"{row.median_duration_s:>9.1f}  {wer}"
                         f"{textwrap.shorten(', '.join(row.failed_checks), 60) or '-'}")
    return "\n".join(lines)


#: Replayed calls listed at most, and differences per call, in the summary (the report has all).
REPLAYS_SHOWN = 20
CHANGES_SHOWN = 8


def replay_text(results) -> str:  # noqa: ANN001 - an iterable of CallResult
    """Replays of recorded calls (personas with `expect.recording`) whose agent now says or does
    something else: one block per call, one line per difference (spec/replay.py), those that
    fail the check first. Empty when no replay changed, so other runs print nothing more."""
    lines: list[str] = []
    changed = [(r, c) for r in results for c in r.checks
               if c.name.startswith("recording: ") and not c.detail.startswith("the agent took the recorded path")]
    for result, check in changed[:REPLAYS_SHOWN]:
        verdict = "path kept" if check.passed else "PATH BROKEN"
        lines.append(f"  {result.call_id or result.persona_id} ({check.name.removeprefix('recording: ')}): {verdict}")
        clauses = check.detail.split("; ")
        lines += [f"    - {textwrap.shorten(c, 150)}" for c in clauses[:CHANGES_SHOWN]]
        if len(clauses) > CHANGES_SHOWN:
            lines.append(f"    ... {len(clauses) - CHANGES_SHOWN} more (in the report)")
    if len(changed) > REPLAYS_SHOWN:
        lines.append(f"  ... {len(changed) - REPLAYS_SHOWN} more replays changed (in the report)")
    return ("replays of recorded calls that changed:\n" + "\n".join(lines)) if lines else ""
