"""What the command line prints of a finished run: one screen of KPIs and a line per persona
(shared by `run`, `experiment` and `mutate`, so every command sums up a run the same way)."""

from __future__ import annotations

import textwrap


def summary_text(tables) -> str:  # noqa: ANN001 - voicelab.lab.tables.Tables
    """One screen: KPIs, then one line per persona."""
    k = tables.kpis()
    calls = tables.calls
    latency = (f"latency p50 {k['latency_p50_ms']:.0f} ms, p95 {k['latency_p95_ms']:.0f} ms"
               if k["latency_p50_ms"] == k["latency_p50_ms"] else "no latency measured")  # NaN: none
    rate_text = f" ({k['success_rate']:.0%})" if k["calls"] else ""
    lines = [f"{k['calls']} calls: {k['passed']} passed{rate_text}, {k['failed_checks']} failed their checks, "
             f"{k['failed_calls']} could not be placed or completed; median duration "
             f"{k['median_duration_s']:.1f} s; {latency}", ""]
    if len(calls):
        by_variant = calls["variant"].notna().any()  # experiments: one line per variant and persona
        keys = ["variant", "persona_id"] if by_variant else ["persona_id"]
        width = 44 if by_variant else 32
        lines.append(f"  {'variant/persona' if by_variant else 'persona':{width}} {'passed':>7} {'median s':>9}  "
                     "failed checks")
        for key, group in calls.groupby(keys):
            name = "/".join(key) if by_variant else (key[0] if isinstance(key, tuple) else key)
            failed = sorted({n for cell in group["failed_checks"] for n in cell.split(", ") if n})
            lines.append(f"  {name[:width]:{width}} {int(group['success'].sum()):>3}/{len(group):<3} "
                         f"{group['duration_s'].median():>9.1f}  {textwrap.shorten(', '.join(failed), 60) or '-'}")
    return "\n".join(lines)
