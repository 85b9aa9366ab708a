"""A run's gates and its one-screen figures, decided from its results without pandas.

`voicelab run` decides its exit status from each persona's pass rate (against its
`pass_threshold`) and, with `--fail-under`, the run's; it prints the KPIs and a line per persona.
The tables (voicelab/lab/tables.py) give all of that, but loading pandas and pyarrow for them is
about half a second, more than a one-call run takes. So the figures a run ends with are made
here from the results themselves, with the same rules: `kpis_of` is `tables.kpis()`,
`persona_gates_of` is `junit.persona_gates(tables)`, `summary_rows_of` is the summary's grouping,
and the decision (`gate_reasons`) is one function both paths call. tests/lab/test_properties_gates.py
shows, over generated runs, that both give the same figures, gates and reasons.

Only runs without variants are summed up here (an experiment compares its variants with the
statistics libraries anyway); JUnit XML and reports still come from the tables.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from voicelab.spec.checks import percentile
from voicelab.spec.models import CallResult, RunManifest


@dataclass(frozen=True)
class PersonaGate:
    """One persona (in one variant): its pass rate over its repeats against its threshold."""

    run_id: str
    variant: str | None
    persona_id: str
    calls: int
    passed: int
    threshold: float

    @property
    def rate(self) -> float:
        return self.passed / self.calls if self.calls else 0.0

    @property
    def ok(self) -> bool:
        return self.calls > 0 and self.rate >= self.threshold - 1e-12


@dataclass(frozen=True)
class SummaryRow:
    """A line of the run's summary: one persona's calls."""

    name: str
    passed: int
    calls: int
    median_duration_s: float
    failed_checks: list[str]
    #: Voice calls: the mean word error rate of what the agent heard of this persona (None: not measured).
    wer: float | None = None


def gate_reasons(kpis: Mapping[str, float], gates: Iterable[PersonaGate], fail_under: float | None) -> list[str]:
    """Why the run fails its gates (empty: it passes), from its KPIs and its persona gates. With
    `fail_under`, the overall pass rate must reach it; personas must always reach their own
    `pass_threshold`. Without either being set, every call must succeed."""
    reasons: list[str] = []
    if not kpis["calls"]:
        return reasons
    if fail_under is not None and kpis["success_rate"] < fail_under - 1e-12:
        reasons.append(f"{kpis['success_rate']:.0%} of calls succeeded, under --fail-under {fail_under:.0%}")
    for gate in gates:
        custom = gate.threshold < 1.0
        if not gate.ok and (custom or fail_under is None):
            where = f"{gate.variant}/" if gate.variant else ""
            reasons.append(f"{where}{gate.persona_id}: {gate.passed}/{gate.calls} passed ({gate.rate:.0%}), "
                           f"under its pass_threshold {gate.threshold:.0%}")
    return reasons


def _median(values: Iterable[float]) -> float:
    """The median as pandas takes it: NaN (and None) left out, NaN when nothing is left."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(statistics.median(kept)) if kept else math.nan


def _failed_checks(result: CallResult) -> str:
    """The calls table's `failed_checks` cell (its names joined, as tables.py writes it)."""
    return ", ".join(c.name for c in result.checks if not c.passed)


def kpis_of(results: list[CallResult]) -> dict[str, float]:
    """`tables.kpis()` of these results: the numbers at the top of the summary and the report."""
    n = len(results)
    passed = sum(1 for r in results if r.success)
    latencies = [t.latency_ms for r in results for t in r.transcript
                 if t.latency_ms is not None and not math.isnan(t.latency_ms)]
    return {
        "calls": n,
        "success_rate": passed / n if n else math.nan,
        "passed": passed,
        "failed_checks": sum(1 for r in results if r.status == "completed" and not r.success),
        "failed_calls": sum(1 for r in results if r.status == "failed"),
        "median_duration_s": _median(r.duration_seconds for r in results) if n else math.nan,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
    }


def persona_gates_of(results: list[CallResult], manifests: Mapping[str, RunManifest]) -> list[PersonaGate]:
    """`junit.persona_gates(tables)` of these results: every persona of every run (and variant),
    in the order first met, with the threshold its run's manifest stored. A result without a
    run id belongs to no run's gate (the tables' grouping leaves it out too)."""
    counts: dict[tuple[str, str, str], list[int]] = {}
    for r in results:
        if r.run_id is None:
            continue
        count = counts.setdefault((r.run_id, r.variant or "", r.persona_id), [0, 0])
        count[0] += 1
        count[1] += bool(r.success)
    gates = []
    for (run_id, variant, persona_id), (calls, passed) in counts.items():
        manifest = manifests.get(run_id)
        threshold = manifest.pass_thresholds.get(persona_id, 1.0) if manifest else 1.0
        gates.append(PersonaGate(run_id, variant or None, persona_id, calls, passed, threshold))
    return gates


def gate_failures_of(results: list[CallResult], manifests: Mapping[str, RunManifest],
                     fail_under: float | None) -> list[str]:
    """`junit.gate_failures(tables, fail_under)` of these results."""
    return gate_reasons(kpis_of(results), persona_gates_of(results, manifests), fail_under)


def summary_rows_of(results: list[CallResult]) -> list[SummaryRow]:
    """The summary's line per persona (sorted by id, as the tables' grouping sorts), for results
    without variants."""
    if any(r.variant is not None for r in results):
        raise ValueError("summary_rows_of sums up runs without variants: use the tables for an experiment")
    groups: dict[str, list[CallResult]] = {}
    for r in results:
        groups.setdefault(r.persona_id, []).append(r)
    rows = []
    for persona_id in sorted(groups):
        group = groups[persona_id]
        failed = sorted({n for r in group for n in _failed_checks(r).split(", ") if n})
        wers = [w for r in group if (w := r.metrics.wer) is not None and w == w]  # NaN: not measured
        rows.append(SummaryRow(persona_id, sum(1 for r in group if r.success), len(group),
                               _median(r.duration_seconds for r in group), failed,
                               sum(wers) / len(wers) if wers else None))
    return rows
