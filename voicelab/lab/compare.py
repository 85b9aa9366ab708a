"""Two sets of stored calls compared: which is better, for which personas, and how sure we are.

A side is a stored run or one variant of it (`RUN` or `RUN:VARIANT`). Everything here is a pure
function from the calls and turns tables to tables and a decision, so the experiment report,
`voicelab compare` and notebooks/compare.ipynb show the same figures (methods: voicelab/lab/stats.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from voicelab.lab import stats
from voicelab.lab.store import DEFAULT_ROOT
from voicelab.lab.tables import Tables, load_runs
from voicelab.spec.errors import UsageError

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


def distinct(sides: list[Side]) -> list[Side]:
    """The sides with labels that tell them apart: a run compared with itself is shown as
    `RUN (baseline)` and `RUN (candidate)`, other repeated labels get `#2`, `#3`, ..."""
    labels = [s.label for s in sides]
    if len(set(labels)) == len(labels):
        return sides
    if len(sides) == 2:
        new = [f"{labels[0]} (baseline)", f"{labels[1]} (candidate)"]
    else:
        seen: dict[str, int] = {}
        new = []
        for label in labels:
            seen[label] = seen.get(label, 0) + 1
            new.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return [Side(label, s.calls, s.turns) for s, label in zip(sides, new, strict=True)]


def _rate_row(calls: pd.DataFrame) -> dict:
    n = len(calls)
    passed = int(calls["success"].fillna(False).astype(bool).sum()) if n else 0
    low, high = stats.wilson(passed, n)
    return {"calls": n, "passed": passed, "rate": passed / n if n else math.nan, "ci_low": low, "ci_high": high}


def success_table(sides: list[Side]) -> pd.DataFrame:
    """Per side and persona (and all personas): calls, passed, pass rate and its Wilson interval."""
    rows = []
    for s in distinct(sides):
        rows.append({"side": s.label, "persona_id": ALL, **_rate_row(s.calls)})
        for persona_id, group in s.calls.groupby("persona_id", sort=True):
            rows.append({"side": s.label, "persona_id": persona_id, **_rate_row(group)})
    return pd.DataFrame(rows, columns=["side", "persona_id", "calls", "passed", "rate", "ci_low", "ci_high"])


def _failed_checks(calls: pd.DataFrame) -> set[str]:
    return {name for cell in calls["failed_checks"] if isinstance(cell, str) for name in cell.split(", ") if name}


#: The consistency rule's least number of calls on each side (1/1 -> 0/1 is no evidence).
MIN_CONSISTENT = 2


def _compare_rows(base: pd.DataFrame, cand: pd.DataFrame, needed: bool) -> dict:
    b, c = _rate_row(base), _rate_row(cand)
    p = stats.exact_p(b["passed"], b["calls"], c["passed"], c["calls"])
    worse_p = stats.exact_p(b["passed"], b["calls"], c["passed"], c["calls"], alternative="greater")
    difference = c["rate"] - b["rate"]
    significant = stats.below_alpha(p)
    # passed every call before, fails every call now, on enough calls that it is no fluke of one
    consistent = (b["calls"] >= MIN_CONSISTENT and c["calls"] >= MIN_CONSISTENT and b["passed"] == b["calls"]
                  and c["passed"] == 0)
    newly = sorted(_failed_checks(cand) - _failed_checks(base))
    calls_needed = None
    if needed and not significant and b["calls"] and c["calls"] and difference:
        calls_needed = stats.calls_needed(b["rate"], c["rate"])
    return {"base_calls": b["calls"], "base_passed": b["passed"], "base_rate": b["rate"],
            "cand_calls": c["calls"], "cand_passed": c["passed"], "cand_rate": c["rate"],
            "difference": difference, "p_value": p, "significant": significant, "p_worse": worse_p,
            "p_worse_holm": worse_p, "consistently_worse": consistent, "regression": False,
            "newly_failing": ", ".join(newly), "calls_needed": calls_needed}


COMPARE_COLUMNS = ["persona_id", "base_calls", "base_passed", "base_rate", "cand_calls", "cand_passed",
                   "cand_rate", "difference", "p_value", "significant", "p_worse", "p_worse_holm",
                   "consistently_worse", "regression", "newly_failing", "calls_needed"]


def persona_comparison(base: Side, cand: Side, *, calls_needed: bool = True) -> pd.DataFrame:
    """Per persona both sides have (first row: all calls): pass rates, the difference, Fisher's
    exact p-value (two-sided) and whether it is significant, the one-sided p that the candidate is
    worse (per persona Holm-adjusted over the personas), whether it passed every baseline call and
    fails every candidate call, whether that is a regression (what fails the gate), the checks that
    fail only in the candidate, and the calls per side a non-significant difference would need
    (`calls_needed=False` leaves that search out: the gate does not need it)."""
    rows = [{"persona_id": ALL, **_compare_rows(base.calls, cand.calls, calls_needed)}]
    shared = sorted(set(base.calls["persona_id"].dropna()) & set(cand.calls["persona_id"].dropna()), key=str)
    for persona_id in shared:
        rows.append({"persona_id": persona_id,
                     **_compare_rows(base.calls[base.calls["persona_id"] == persona_id],
                                     cand.calls[cand.calls["persona_id"] == persona_id], calls_needed)})
    for row, adjusted in zip(rows[1:], stats.holm([r["p_worse"] for r in rows[1:]]), strict=True):
        row["p_worse_holm"] = adjusted
    for row in rows:
        row["regression"] = stats.below_alpha(row["p_worse_holm"]) or row["consistently_worse"]
    table = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    table["calls_needed"] = pd.Series([r["calls_needed"] for r in rows], dtype=object)  # ints or None
    return table


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
            a = base.calls["duration_s"].dropna().astype(float).tolist()  # a call without a duration says nothing
            b = cand.calls["duration_s"].dropna().astype(float).tolist()
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
    """`worse`: the candidate passes significantly less often over all calls, or some persona is
    worse (see `persona_comparison`: significantly after Holm, or failing every call it passed),
    or its p95 latency is worse by more than the margin. `reasons` says which, `personas` names
    the personas that are worse and `newly_failing` their checks that fail only in the candidate;
    `evidence` is the one-screen summary."""

    base: str
    candidate: str
    worse: bool
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    personas: list[str] = field(default_factory=list)
    newly_failing: dict[str, list[str]] = field(default_factory=dict)


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{v:.0%}"


def _persona_reason(r: pd.Series, personas: int) -> str:
    counts = f"{int(r['base_passed'])}/{int(r['base_calls'])} -> {int(r['cand_passed'])}/{int(r['cand_calls'])} passed"
    if stats.below_alpha(r["p_worse_holm"]):
        why = f"one-sided Fisher p = {r['p_worse']:.3g}"
        why += f", Holm-adjusted over {personas} personas {r['p_worse_holm']:.3g}" if personas > 1 else ""
        why += f" < {stats.ALPHA}"
    else:
        why = f"it passed every baseline call and fails every candidate call (Fisher p = {r['p_worse']:.3g})"
    newly = r["newly_failing"] or "none (its calls failed without a failing check)"
    return f"persona {r['persona_id']}: {counts} ({why}); checks failing only in the candidate: {newly}"


def decide(base: Side, cand: Side, latency_margin_ms: float = 100.0) -> Decision:
    """The gate of `compare --fail-if-worse`, from the calls alone (no chart or report is needed,
    so nothing that renders them can lose it): worse when the one-sided Fisher test (alpha 0.05)
    says the candidate passes less often over all calls, or any single persona is worse (its
    one-sided test Holm-adjusted over the personas, or every baseline call passed and every
    candidate call failed, at least 2 each), or the p95 latency's point difference exceeds the margin."""
    table = persona_comparison(base, cand, calls_needed=False)
    overall, personas = table.iloc[0], table.iloc[1:]
    latency = latency_comparison(base, cand).set_index("measure").loc["response latency p95 (ms)"]
    reasons = []
    if overall["regression"]:
        why = (f"one-sided Fisher p = {overall['p_worse']:.3g} < {stats.ALPHA}" if stats.below_alpha(overall["p_worse"])
               else "every call passed in the baseline and every call fails in the candidate")
        reasons.append(f"pass rate {_pct(overall['cand_rate'])} vs {_pct(overall['base_rate'])} ({why})")
    worse = personas[personas["regression"]]
    reasons += [_persona_reason(r, len(personas)) for _, r in worse.iterrows()]
    if not math.isnan(latency["difference"]) and latency["difference"] > latency_margin_ms:
        reasons.append(f"p95 latency {latency['candidate']:.0f} ms vs {latency['base']:.0f} ms "
                       f"(+{latency['difference']:.0f} ms > margin {latency_margin_ms:.0f} ms)")
    evidence = [
        f"baseline  {base.label}: {int(overall['base_passed'])}/{int(overall['base_calls'])} passed "
        f"({_pct(overall['base_rate'])}), p95 latency {_ms(latency['base'])}",
        f"candidate {cand.label}: {int(overall['cand_passed'])}/{int(overall['cand_calls'])} passed "
        f"({_pct(overall['cand_rate'])}), p95 latency {_ms(latency['candidate'])}",
        f"pass rate difference {_points(overall['difference'])}, Fisher p = {_p(overall['p_value'])} (two-sided), "
        f"{_p(overall['p_worse'])} (candidate worse)",
        f"personas compared: {len(personas)}; worse: {', '.join(map(str, worse['persona_id'])) or 'none'} "
        "(one-sided Fisher, Holm-adjusted, or every call that passed now failing)",
        f"p95 latency difference {_signed_ms(latency['difference'])}, 95% CI "
        f"[{_signed_ms(latency['ci_low'])}, {_signed_ms(latency['ci_high'])}], margin {latency_margin_ms:.0f} ms",
    ]
    evidence += advice(base, cand, table)
    return Decision(base.label, cand.label, bool(reasons), reasons, evidence,
                    personas=[str(p) for p in worse["persona_id"]],
                    newly_failing={str(r["persona_id"]): [c for c in r["newly_failing"].split(", ") if c]
                                   for _, r in worse.iterrows()})


def advice(base: Side, cand: Side, table: pd.DataFrame | None = None) -> list[str]:
    """Where the calls are too few to tell: how many calls per side an exact test would need to
    see the observed difference (or a 10-point one, when none is seen) with 80% power. `table`:
    their `persona_comparison`, when it is at hand."""
    table = persona_comparison(base, cand, calls_needed=False) if table is None else table
    overall, personas = table.iloc[0], max(1, len(table) - 1)
    lines = []
    if overall["significant"] or not overall["base_calls"] or not overall["cand_calls"]:
        return lines
    if overall["difference"]:
        n = stats.calls_needed(float(overall["base_rate"]), float(overall["cand_rate"]))
        if n is not None:
            lines.append(f"too few calls to tell: {_calls(n, personas)} would detect a difference of "
                         f"{_points(overall['difference'])} at 80% power (one-sided Fisher exact test)")
    else:
        rate = float(overall["base_rate"])
        target = max(rate - 0.1, 0.0) if rate > 0.05 else min(rate + 0.1, 1.0)
        n = stats.calls_needed(rate, target)
        if n:
            lines.append(f"no difference seen; detecting a 10-point change from {_pct(rate)} would need "
                         f"{_calls(n, personas)}")
    return lines


def _calls(n: int, personas: int) -> str:
    if n > stats.MAX_CALLS:
        return f"more than {stats.MAX_CALLS} calls per side"
    return f"{n} calls per side (about {math.ceil(n / personas)} repeats per persona)"


def _p(v: float) -> str:
    return "n/a" if v != v else f"{v:.3g}"


def _ms(v: float) -> str:
    return "n/a" if v != v else f"{v:.0f} ms"


def _signed_ms(v: float) -> str:
    return "n/a" if v != v else f"{v:+.0f} ms"


def _points(v: float) -> str:
    return "n/a" if v != v else f"{v * 100:+.0f} points"
