"""Two sets of stored calls compared: which is better, for which personas, and how sure we are.

A side is a stored run or one variant of it (`RUN` or `RUN:VARIANT`). Everything here is a pure
function from the calls and turns tables to tables and a decision, so the experiment report,
`voicelab compare` and notebooks/compare.ipynb show the same figures (methods: voicelab/stats.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import stats
from .errors import UsageError
from .store import DEFAULT_ROOT
from .tables import Tables, load_runs

ALL = "(all personas)"


@dataclass(frozen=True)
class Side:
    """The calls of one run, or of one variant of an experiment run."""

    label: str
    calls: pd.DataFrame
    turns: pd.DataFrame


def parse_ref(text: str) -> tuple[str, str | None]:
    run_id, _, variant = text.partition(":")
    return run_id, (variant or None)


def side_of(tables: Tables, run_id: str, variant: str | None) -> Side:
    """One side from loaded tables; UsageError naming the choices when the variant is unknown or
    an experiment run is given without one."""
    manifest = tables.manifests[run_id]
    variants = [v.id for v in manifest.variants]
    if variant is None and variants:
        raise UsageError(f"run '{run_id}' is an experiment with variants {', '.join(variants)}: "
                         f"compare one of them, e.g. {run_id}:{variants[0]}")
    if variant is not None and variant not in variants:
        known = ", ".join(variants) or "none (it is not an experiment)"
        raise UsageError(f"run '{run_id}' has no variant '{variant}' (its variants: {known})")
    calls = tables.calls[tables.calls["run_id"] == run_id]
    turns = tables.turns[tables.turns["run_id"] == run_id]
    if variant is not None:
        calls, turns = calls[calls["variant"] == variant], turns[turns["variant"] == variant]
    return Side(f"{run_id}:{variant}" if variant else run_id, calls.reset_index(drop=True),
                turns.reset_index(drop=True))


def load_side(ref: str, root: str | Path = DEFAULT_ROOT) -> Side:
    run_id, variant = parse_ref(ref)
    tables = load_runs(run_id, root=root)
    return side_of(tables, next(iter(tables.manifests)), variant)


def variant_sides(tables: Tables) -> list[Side]:
    """Every variant of an experiment run, in the file's order (the first is the baseline)."""
    (run_id, manifest), = tables.manifests.items()
    return [side_of(tables, run_id, v.id) for v in manifest.variants]


# --------------------------------------------------------------------------- pass rates


def _rate_row(calls: pd.DataFrame) -> dict:
    n, passed = len(calls), int(calls["success"].sum()) if len(calls) else 0
    low, high = stats.wilson(passed, n)
    return {"calls": n, "passed": passed, "rate": passed / n if n else math.nan, "ci_low": low, "ci_high": high}


def success_table(sides: list[Side]) -> pd.DataFrame:
    """Per side and persona (and all personas): calls, passed, pass rate and its Wilson interval."""
    rows = []
    for s in sides:
        rows.append({"side": s.label, "persona_id": ALL, **_rate_row(s.calls)})
        for persona_id, group in s.calls.groupby("persona_id", sort=True):
            rows.append({"side": s.label, "persona_id": persona_id, **_rate_row(group)})
    return pd.DataFrame(rows, columns=["side", "persona_id", "calls", "passed", "rate", "ci_low", "ci_high"])


def _failed_checks(calls: pd.DataFrame) -> set[str]:
    return {name for cell in calls["failed_checks"].fillna("") for name in str(cell).split(", ") if name}


def _compare_rows(base: pd.DataFrame, cand: pd.DataFrame) -> dict:
    b, c = _rate_row(base), _rate_row(cand)
    p = stats.exact_p(b["passed"], b["calls"], c["passed"], c["calls"])
    difference = c["rate"] - b["rate"]
    significant = bool(p < stats.ALPHA) if not math.isnan(p) else False
    newly = sorted(_failed_checks(cand) - _failed_checks(base))
    needed = None
    if not significant and b["calls"] and c["calls"]:
        needed = stats.calls_needed(b["rate"], c["rate"]) if difference else None
    return {"base_calls": b["calls"], "base_passed": b["passed"], "base_rate": b["rate"],
            "cand_calls": c["calls"], "cand_passed": c["passed"], "cand_rate": c["rate"],
            "difference": difference, "p_value": p, "significant": significant,
            "regression": significant and difference < 0, "newly_failing": ", ".join(newly),
            "calls_needed": needed}


COMPARE_COLUMNS = ["persona_id", "base_calls", "base_passed", "base_rate", "cand_calls", "cand_passed",
                   "cand_rate", "difference", "p_value", "significant", "regression", "newly_failing", "calls_needed"]


def persona_comparison(base: Side, cand: Side) -> pd.DataFrame:
    """Per persona both sides have (and all of them): pass rates, the difference, Fisher's exact
    p-value, whether it is a significant drop (a regression), the checks that fail only in the
    candidate, and the calls per side a non-significant difference would need."""
    rows = [{"persona_id": ALL, **_compare_rows(base.calls, cand.calls)}]
    shared = sorted(set(base.calls["persona_id"]) & set(cand.calls["persona_id"]))
    for persona_id in shared:
        rows.append({"persona_id": persona_id, **_compare_rows(base.calls[base.calls["persona_id"] == persona_id],
                                                               cand.calls[cand.calls["persona_id"] == persona_id])})
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def flaky(sides: list[Side]) -> pd.DataFrame:
    """Personas whose pass rate within one side is strictly between 0 and 1."""
    table = success_table(sides)
    out = table[(table["persona_id"] != ALL) & (table["rate"] > 0) & (table["rate"] < 1)]
    return out[["side", "persona_id", "calls", "passed", "rate"]].reset_index(drop=True)


# --------------------------------------------------------------------------- latency and duration


def latency_comparison(base: Side, cand: Side) -> pd.DataFrame:
    """Response latency p50 / p95 over every agent turn, and median call duration: both sides,
    the candidate's difference and its 95% bootstrap interval."""
    rows = []
    pairs = [("response latency p50 (ms)", "latency", 50), ("response latency p95 (ms)", "latency", 95),
             ("call duration median (s)", "duration", 50)]
    for name, what, q in pairs:
        if what == "latency":
            a = base.turns["latency_ms"].dropna().astype(float).tolist()
            b = cand.turns["latency_ms"].dropna().astype(float).tolist()
        else:
            a, b = base.calls["duration_s"].astype(float).tolist(), cand.calls["duration_s"].astype(float).tolist()
        estimate, low, high = stats.bootstrap_difference(a, b, q)
        rows.append({"measure": name, "base": _quantile(a, q), "candidate": _quantile(b, q), "difference": estimate,
                     "ci_low": low, "ci_high": high, "base_n": len(a), "cand_n": len(b)})
    return pd.DataFrame(rows, columns=["measure", "base", "candidate", "difference", "ci_low", "ci_high",
                                       "base_n", "cand_n"])


def _quantile(values: list[float], q: float) -> float:
    return float(pd.Series(values).quantile(q / 100)) if values else math.nan


# --------------------------------------------------------------------------- the decision


@dataclass
class Decision:
    """`worse`: the candidate is significantly worse in pass rate, or its p95 latency is worse by
    more than the margin. `reasons` says which; `evidence` is the one-screen summary."""

    base: str
    candidate: str
    worse: bool
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{v:.0%}"


def decide(base: Side, cand: Side, latency_margin_ms: float = 100.0) -> Decision:
    """The gate of `compare --fail-if-worse`: a one-sided Fisher test (alpha 0.05) that the
    candidate passes less often, and the p95 latency's point difference against the margin."""
    overall = persona_comparison(base, cand).iloc[0]
    one_sided = stats.exact_p(int(overall["base_passed"]), int(overall["base_calls"]),
                              int(overall["cand_passed"]), int(overall["cand_calls"]), alternative="greater")
    latency = latency_comparison(base, cand).set_index("measure").loc["response latency p95 (ms)"]
    reasons = []
    if not math.isnan(one_sided) and one_sided < stats.ALPHA:
        reasons.append(f"pass rate {_pct(overall['cand_rate'])} vs {_pct(overall['base_rate'])} "
                       f"(one-sided Fisher p = {one_sided:.3g} < {stats.ALPHA})")
    if not math.isnan(latency["difference"]) and latency["difference"] > latency_margin_ms:
        reasons.append(f"p95 latency {latency['candidate']:.0f} ms vs {latency['base']:.0f} ms "
                       f"(+{latency['difference']:.0f} ms > margin {latency_margin_ms:.0f} ms)")
    evidence = [
        f"baseline  {base.label}: {int(overall['base_passed'])}/{int(overall['base_calls'])} passed "
        f"({_pct(overall['base_rate'])}), p95 latency {_ms(latency['base'])}",
        f"candidate {cand.label}: {int(overall['cand_passed'])}/{int(overall['cand_calls'])} passed "
        f"({_pct(overall['cand_rate'])}), p95 latency {_ms(latency['candidate'])}",
        f"pass rate difference {_points(overall['difference'])}, Fisher p = {_p(overall['p_value'])} (two-sided), "
        f"{_p(one_sided)} (candidate worse)",
        f"p95 latency difference {_signed_ms(latency['difference'])}, 95% CI "
        f"[{_signed_ms(latency['ci_low'])}, {_signed_ms(latency['ci_high'])}], margin {latency_margin_ms:.0f} ms",
    ]
    evidence += advice(base, cand)
    return Decision(base.label, cand.label, bool(reasons), reasons, evidence)


def advice(base: Side, cand: Side) -> list[str]:
    """Where the calls are too few to tell: what a difference would need (per persona too)."""
    table = persona_comparison(base, cand)
    overall = table.iloc[0]
    lines = []
    if not overall["significant"] and overall["base_calls"] and overall["cand_calls"]:
        personas = max(1, len(table) - 1)
        if overall["difference"]:
            n = int(overall["calls_needed"])
            lines.append(f"too few calls to tell: {n} calls per side (about {math.ceil(n / personas)} repeats "
                         f"per persona) would detect a difference of {_points(overall['difference'])} "
                         "at 80% power")
        else:
            rate = float(overall["base_rate"])
            target = max(rate - 0.1, 0.0) if rate > 0.05 else min(rate + 0.1, 1.0)
            n = stats.calls_needed(rate, target)
            if n:
                lines.append(f"no difference seen; detecting a 10-point change from {_pct(rate)} would need "
                             f"{n} calls per side (about {math.ceil(n / personas)} repeats per persona)")
    return lines


def _p(v: float) -> str:
    return "n/a" if v != v else f"{v:.3g}"


def _ms(v: float) -> str:
    return "n/a" if v != v else f"{v:.0f} ms"


def _signed_ms(v: float) -> str:
    return "n/a" if v != v else f"{v:+.0f} ms"


def _points(v: float) -> str:
    return "n/a" if v != v else f"{v * 100:+.0f} points"
