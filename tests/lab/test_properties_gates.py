"""The run's end without pandas (voicelab/lab/gates.py) decides exactly as the tables do.

`voicelab run` sums up and gates a run without variants from its results, so that a one-call
run does not load pandas; a second path to a verdict is only acceptable if it cannot differ.
Over generated runs (tests/properties.py: 1..200 calls per persona, all pass, all fail, mixed,
failed calls, NaN durations and latencies, unicode ids, calls without an id) and generated
thresholds and --fail-under values, both paths give the same KPIs, persona gates, reasons and
summary screen: from results in memory (as a notebook holds them) and from a stored run read
back (as the command line reads it: re-run calls, a torn line).
"""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.lab.gates import gate_failures_of, kpis_of, persona_gates_of
from voicelab.lab.junit import gate_failures, persona_gates
from voicelab.lab.store import RunStore
from voicelab.lab.tables import Tables, calls_table, load_runs, tools_table, turns_table
from voicelab.spec.models import CallResult, RunManifest
from voicelab.surfaces.cli.text import summary_text, summary_text_of

from ..properties import RunPlan, plans, results

FAST = settings(max_examples=40, deadline=None)
#: Thresholds a persona file may set (1.0 is the default), and some that sit right at a pass rate.
THRESHOLDS = st.one_of(st.sampled_from([1.0, 0.9, 0.8, 2 / 3, 0.5, 0.0]), st.floats(0, 1))
FAIL_UNDER = st.one_of(st.none(), st.sampled_from([0.0, 0.5, 0.9, 0.95, 1.0]), st.floats(0, 1))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_agree(tables: Tables, calls: list[CallResult], manifest: RunManifest, fail_under: float | None) -> None:
    light, full = kpis_of(calls), tables.kpis()
    assert light.keys() == full.keys()
    for key in full:
        assert same(float(light[key]), float(full[key])), (key, light[key], full[key])
    assert persona_gates_of(calls, {manifest.run_id: manifest}) == persona_gates(tables)
    for under in (fail_under, None, 0.0, 1.0):
        assert gate_failures_of(calls, {manifest.run_id: manifest}, under) == gate_failures(tables, under)
    assert summary_text_of(calls) == summary_text(tables)


def manifest_for(calls: list[CallResult], thresholds: list[float], run_id: str = "run") -> RunManifest:
    personas = list(dict.fromkeys(r.persona_id for r in calls))
    return RunManifest(run_id=run_id, personas=personas, agent="dentist",
                       persona_info={p: {"name": p, "agent": "dentist"} for p in personas},
                       pass_thresholds={p: t for p, t in zip(personas, thresholds, strict=False) if t != 1.0})


@FAST
@given(plans(), st.lists(THRESHOLDS, min_size=4, max_size=4), FAIL_UNDER)
def test_the_gates_and_summary_from_results_are_the_tables_ones(plan: RunPlan, thresholds: list[float],
                                                                fail_under: float | None):
    calls = results(plan)
    manifest = manifest_for(calls, thresholds)
    tables = Tables(calls, {"run": manifest}, calls_table(calls, {"run": manifest}), turns_table(calls),
                    tools_table(calls))
    assert_agree(tables, calls, manifest, fail_under)


@FAST
@given(plans(max_calls=30), st.lists(THRESHOLDS, min_size=4, max_size=4), FAIL_UNDER, st.integers(0, 2**16))
def test_a_stored_run_is_gated_alike_from_its_results_and_from_its_tables(plan: RunPlan, thresholds: list[float],
                                                                          fail_under: float | None, seed: int):
    rng = random.Random(seed)
    calls = results(plan)
    # re-runs (a resumed run stores a call again: the last result counts) and results of an
    # earlier session at the end
    calls += [c.model_copy(update={"success": not c.success}) for c in rng.sample(calls, min(3, len(calls)))]
    manifest = manifest_for(calls, thresholds)
    with tempfile.TemporaryDirectory() as root:
        run = RunStore(root).create(manifest)
        lines = [c.model_dump_json() for c in calls]  # NaN fields are stored as null: unreadable, on both paths
        if rng.random() < 0.5:
            lines.insert(rng.randrange(len(lines) + 1), lines[0][: len(lines[0]) // 2])  # a torn write
        Path(run.calls_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
        stored = run.results()
        tables = load_runs(manifest.run_id, root=root)
        assert len(stored) == len(tables.calls)
        assert_agree(tables, stored, manifest, fail_under)


def test_an_empty_run_agrees_too():
    manifest = RunManifest(run_id="run", personas=["anna"])
    tables = Tables([], {"run": manifest}, calls_table([]), turns_table([]), tools_table([]))
    assert_agree(tables, [], manifest, 0.9)
