"""CI gates: JUnit XML of a run (one test case per persona, per variant) and the pass-rate gates
`--fail-under` and each persona's `pass_threshold`.

The XML keeps to the Surefire / Jenkins shape (testsuites > testsuite > testcase with failure and
system-out), which GitLab, GitHub test reporters, Jenkins and Azure read alike; a persona's pass
rate and threshold are in its test case's system-out, since that shape has no per-case properties.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from voicelab.lab.gates import PersonaGate, gate_reasons
from voicelab.lab.tables import Tables

EXCERPT_TURNS = 6


def persona_gates(tables: Tables) -> list[PersonaGate]:
    """Every persona of every run (and variant) with its threshold (stored in the manifest)."""
    gates = []
    calls = tables.calls
    for (run_id, variant, persona_id), group in calls.groupby(
            ["run_id", calls["variant"].fillna(""), "persona_id"], sort=False):
        manifest = tables.manifests.get(run_id)
        threshold = manifest.pass_thresholds.get(persona_id, 1.0) if manifest else 1.0
        gates.append(PersonaGate(run_id, variant or None, persona_id, len(group), int(group["success"].sum()),
                                 threshold))
    return gates


def gate_failures(tables: Tables, fail_under: float | None) -> list[str]:
    """Why the run fails its gates (empty: it passes). With `fail_under`, the overall pass rate
    must reach it; personas must always reach their own `pass_threshold`. Without either being
    set, every call must succeed. (The rule is gates.gate_reasons, which a run's end also applies
    to its results without the tables.)"""
    return gate_reasons(tables.kpis(), persona_gates(tables), fail_under)


def _excerpt(results: list, call_id: str) -> str:
    result = next((r for r in results if r.call_id == call_id), None)
    if result is None:
        return ""
    lines = [f"{t.speaker}: {t.text}" for t in result.transcript[:EXCERPT_TURNS]]
    if len(result.transcript) > EXCERPT_TURNS:
        lines.append(f"... ({len(result.transcript) - EXCERPT_TURNS} more turns)")
    return "\n".join(textwrap.shorten(line, 200) for line in lines)


def junit_xml(tables: Tables) -> str:
    """One testsuite per run and variant, one testcase per persona: failed when its pass rate is
    under its threshold, with the failed checks and a transcript excerpt of a failed call."""
    root = ET.Element("testsuites", name="voicelab")
    calls = tables.calls
    total = failures = 0
    total_time = 0.0
    gates = persona_gates(tables)
    for (run_id, variant), suite_gates in _grouped(gates).items():
        suite_calls = calls[(calls["run_id"] == run_id) & (calls["variant"].fillna("") == (variant or ""))]
        manifest = tables.manifests.get(run_id)
        suite = ET.SubElement(root, "testsuite", name=f"{run_id}:{variant}" if variant else run_id,
                              tests=str(len(suite_gates)), failures=str(sum(not g.ok for g in suite_gates)),
                              errors="0", skipped="0", time=f"{suite_calls['duration_s'].sum():.3f}",
                              timestamp=manifest.started_at if manifest else "")
        for gate in suite_gates:
            mine = suite_calls[suite_calls["persona_id"] == gate.persona_id]
            agent = str(mine["agent_id"].iloc[0]).split("--")[0] if len(mine) else "agent"
            case = ET.SubElement(suite, "testcase", name=gate.persona_id,
                                 classname=f"voicelab.{agent}" + (f".{variant}" if variant else ""),
                                 time=f"{mine['duration_s'].sum():.3f}")
            summary = (f"pass rate {gate.passed}/{gate.calls} ({gate.rate:.0%}), "
                       f"pass_threshold {gate.threshold:.0%}")
            if not gate.ok:
                failed = mine[~mine["success"].astype(bool)]
                checks = sorted({c for cell in failed["failed_checks"].fillna("") for c in str(cell).split(", ")
                                 if c})
                errors = sorted({str(e) for e in failed["error"].dropna() if e})
                first = str(failed["call_id"].iloc[0]) if len(failed) else ""
                body = [summary, "failed checks: " + (", ".join(checks) or "none (the calls failed)")]
                body += [f"error: {e}" for e in errors[:3]]
                # only that call's result is parsed (a 10,000-call run has thousands of failures)
                rows = [tables.calls.index.get_loc(failed.index[0])] if len(failed) else []
                body += [f"transcript of {first}:", _excerpt(tables.results_at(rows), first)]
                failure = ET.SubElement(case, "failure", type="voicelab.pass_rate",
                                        message=f"{summary}; failed checks: {', '.join(checks) or '-'}")
                failure.text = "\n".join(body)
            out = ET.SubElement(case, "system-out")
            out.text = summary + "\n" + "\n".join(
                f"{r.call_id}: {'passed' if r.success else 'FAILED ' + (r.failed_checks or r.end_reason)}"
                for r in mine.itertuples())
        total += len(suite_gates)
        failures += sum(not g.ok for g in suite_gates)
        total_time += float(suite_calls["duration_s"].sum())
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _grouped(gates: list[PersonaGate]) -> dict[tuple[str, str | None], list[PersonaGate]]:
    out: dict[tuple[str, str | None], list[PersonaGate]] = {}
    for gate in gates:
        out.setdefault((gate.run_id, gate.variant), []).append(gate)
    return out


def write_junit(tables: Tables, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(tables), encoding="utf-8")
    return path
