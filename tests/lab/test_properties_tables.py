"""Property-based tests of the tables, the report's HTML pieces and the JUnit gates over generated
runs (tests/properties.py): any repeat count 1..200, all pass, all fail, mixed, failed calls with
and without an error, missing and NaN fields, unicode, one persona or many."""

from __future__ import annotations

import html
import math
import random
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.lab.junit import gate_failures, junit_xml, persona_gates
from voicelab.lab.tables import by_worker
from voicelab.report import build as report

from ..properties import RunPlan, plans, results, tables_of

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(plans())
def test_the_calls_table_has_a_row_per_call_and_kpis_add_up(plan: RunPlan):
    calls = results(plan)
    tables = tables_of(calls)
    assert len(tables.calls) == plan.calls == len(calls)
    assert tables.calls["persona_id"].tolist() == [r.persona_id for r in calls]
    k = tables.kpis()
    passed = sum(r.success for r in calls)
    assert k["calls"] == plan.calls and k["passed"] == passed
    assert math.isclose(k["success_rate"], passed / plan.calls)
    assert k["failed_calls"] == sum(r.status == "failed" for r in calls)
    assert k["failed_checks"] + k["failed_calls"] + passed == plan.calls
    assert len(tables.turns) == sum(len(r.transcript) for r in calls)
    assert len(tables.tools) == sum(len(r.tool_calls) for r in calls)
    summary = tables.tools_summary()
    assert sorted(summary["persona_id"]) == sorted({r.persona_id for r in calls})


@FAST
@given(plans())
def test_every_report_piece_renders_and_escapes_what_the_user_wrote(plan: RunPlan):
    calls = results(plan)
    tables = tables_of(calls)
    pieces = [report.header_html(tables), report.failures_html(tables), report.calls_html(tables),
              report.tools_html(tables), report.conditions_html(tables),
              report.transcripts_html(tables, audio="none")]
    page = "".join(pieces)
    assert "<script>" not in page, "user text is escaped, never markup"
    turns = [t for r in calls for t in r.transcript]
    cut = sum(t.interrupted for t in turns)
    misheard = sum(t.said is not None and t.said.strip().lower() != t.text.strip().lower() for t in turns)
    assert pieces[5].count('class="vl-cut"') == cut, "every agent turn the caller cut off is marked"
    assert pieces[5].count('class="vl-said"') == misheard, "what the persona said shows where the agent heard else"
    failures = pieces[1]
    bad = [r for r in calls if not r.success]
    if bad:
        assert failures.count("<tr>") == len(bad) + 1  # a header and one row per call that did not succeed
        for r in bad:
            if r.error:
                assert html.escape(r.error) in failures
    else:
        assert "Every call succeeded" in failures
    for persona_id in {r.persona_id for r in calls}:
        passed = sum(r.success for r in calls if r.persona_id == persona_id)
        total = sum(r.persona_id == persona_id for r in calls)
        assert f"{html.escape(persona_id)}: {passed}/{total} passed" in pieces[5]


@FAST
@given(plans())
def test_junit_has_a_case_per_persona_and_fails_exactly_those_under_their_threshold(plan: RunPlan):
    calls = results(plan)
    tables = tables_of(calls)
    root = ET.fromstring(junit_xml(tables).split("\n", 1)[1])
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {p.persona_id for p in plan.personas}
    for gate in persona_gates(tables):
        assert (cases[gate.persona_id].find("failure") is None) == (gate.passed == gate.calls)
    assert int(root.get("tests")) == len(plan.personas)
    assert int(root.get("failures")) == sum(1 for p in plan.personas
                                            if any(not r.success for r in calls if r.persona_id == p.persona_id))
    reasons = gate_failures(tables, None)
    assert len(reasons) == int(root.get("failures"))
    assert gate_failures(tables, 0.0) == []


@FAST
@given(plans(), st.lists(st.sampled_from(["tcp://10.0.0.5:40123", "tcp://10.0.0.6:41234", "tcp://[::1]:9", "ワーカー"]),
                         min_size=1, max_size=4), st.integers(0, 2 ** 16))
def test_calls_per_worker_count_every_call_a_worker_placed_once(plan: RunPlan, workers: list[str], seed: int):
    calls = results(plan)
    rng = random.Random(seed)
    placed = [r.model_copy(update={"worker": rng.choice([*workers, None])}) for r in calls]
    tables = tables_of(placed)
    table = by_worker(tables.calls)
    named = [r for r in placed if r.worker is not None]
    assert int(table["calls"].sum()) == len(named) if named else table.empty
    for row in table.itertuples():
        mine = [r for r in named if r.worker == row.worker]
        assert row.calls == len(mine) and math.isclose(row.success_rate, sum(r.success for r in mine) / len(mine))
        assert row.could_not_complete == sum(r.status == "failed" for r in mine)
    page = report.workers_html(tables)
    assert ("vl-workers" in page) and (page.count("<tr") == len(table) + 1 if named else "one process" in page)
    assert all(html.escape(w) in page for w in {r.worker for r in named})
