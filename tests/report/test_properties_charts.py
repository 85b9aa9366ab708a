"""Property-based tests of the charts: every chart of a report and of a comparison renders to PNG
over generated runs (tests/properties.py), including 100% and 0% pass rates at every count, NaN
durations and latencies, unicode persona ids, one persona or many, and a run against itself."""

from __future__ import annotations

import io

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from voicelab.lab.compare import success_table
from voicelab.lab.tables import by_condition
from voicelab.report import charts
from voicelab.report.build import comparison_figures

from ..properties import RunPlan, plans, results, side_of

FAST = settings(max_examples=8, deadline=None)
#: The generated ids use scripts the default font has no glyphs for: matplotlib says so, and draws boxes.
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")


def render(fig: Figure) -> None:
    fig.savefig(io.BytesIO(), format="png", dpi=20)  # drawing is where a bad error bar or limit fails


@settings(max_examples=6, deadline=None)
@given(plans(max_personas=3))
def test_every_report_chart_renders(plan: RunPlan):
    side = side_of(results(plan))
    for fig in charts.figures(side.calls, side.turns) + [charts.by_condition(by_condition(side.calls))]:
        render(fig)


@FAST
@given(plans(max_personas=3), plans(max_personas=3), st.booleans())
def test_comparison_charts_render_for_any_two_sides_and_a_run_against_itself(a: RunPlan, b: RunPlan, itself: bool):
    base = side_of(results(a, outcome="pass"), "run-a")
    cand = base if itself else side_of(results(b), "run-b")
    for fig in comparison_figures([base, cand]):
        render(fig)
    table = success_table([base, cand])
    assert (table["ci_low"] <= table["rate"]).all() and (table["rate"] <= table["ci_high"]).all()
    assert table["side"].nunique() == 2


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 200), st.sampled_from(["pass", "fail"]))
@example(7, "pass")
@example(12, "pass")
@example(14, "fail")
@example(23, "pass")
def test_the_pass_rate_chart_draws_100_and_0_percent_at_any_count(calls: int, outcome: str):
    """7/7, 9/9, 12/12, 0/14, ...: the Wilson bound rounds to 0.9999999999999999 at some counts."""
    from ..properties import PersonaPlan

    plan = RunPlan((PersonaPlan("dentist-patient", calls, outcome),), seed=calls, voice=False)
    side = side_of(results(plan, outcome=outcome), "run")
    fig = charts.success_by_side(success_table([side]))
    render(fig)
    bars = fig.axes[0].patches  # all personas, and the one persona
    assert [round(b.get_width()) for b in bars] == [100 if outcome == "pass" else 0] * 2
