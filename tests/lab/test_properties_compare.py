"""Property-based tests of the compare decisions (the gate of `compare --fail-if-worse`) over
generated runs (tests/properties.py): a run against itself never fails, all-pass against
all-fail with at least 2 calls a side always does, the two directions never both fail, and a
persona that fails every call it passed is named with its checks, whatever the others do."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.lab.compare import ALL, decide, persona_comparison
from voicelab.lab.stats import below_alpha, exact_p
from voicelab.report.build import comparison_html

from ..properties import PersonaPlan, RunPlan, plans, results, side_of

FAST = settings(max_examples=10, deadline=None)
#: A call without a duration (NaN) once reached the bootstrap, which warned in every report it made.
pytestmark = pytest.mark.filterwarnings("error::scipy.stats.DegenerateDataWarning")
#: Smaller runs for the decision itself: its bootstrap resamples every latency 2000 times.
small = plans(max_personas=3, max_calls=60)


@settings(max_examples=8, deadline=None)
@given(small, st.floats(0, 500))
def test_a_run_against_itself_is_never_worse(plan: RunPlan, margin: float):
    side = side_of(results(plan), "run")
    decision = decide(side, side, margin)
    assert not decision.worse and decision.reasons == [] and decision.personas == []
    assert "is not worse than" in comparison_html(side, side, margin)


@FAST
@given(small, small)
def test_all_pass_against_all_fail_fails_the_gate_with_2_or_more_calls_a_side(a: RunPlan, b: RunPlan):
    base, cand = side_of(results(a, outcome="pass"), "base"), side_of(results(b, outcome="fail"), "cand")
    decision = decide(base, cand, latency_margin_ms=1e9)
    # with 2 or more calls a side it always fails; with a single call on one side, only when even
    # so the exact test is significant (1/1 against 0/20: one-sided Fisher p = 1/21 < 0.05)
    significant = below_alpha(exact_p(a.calls, a.calls, 0, b.calls, alternative="greater"))
    assert decision.worse == (a.calls >= 2 and b.calls >= 2 or significant)
    shared = {p.persona_id for p in a.personas} & {p.persona_id for p in b.personas}
    for persona_id in shared:
        if len(base.calls[base.calls["persona_id"] == persona_id]) >= 2 \
                and len(cand.calls[cand.calls["persona_id"] == persona_id]) >= 2:
            assert persona_id in decision.personas
            assert any(f"persona {persona_id}:" in r for r in decision.reasons)
    assert set(decision.personas) <= shared


@FAST
@given(small, small, st.floats(0, 500))
def test_the_two_directions_never_both_fail_for_the_same_reason(a: RunPlan, b: RunPlan, margin: float):
    """One side may pass less often and the other answer slower, but neither can both pass less
    often and more often, nor be both slower and faster."""
    one, other = side_of(results(a), "one"), side_of(results(b), "other")
    forward, backward = decide(one, other, margin), decide(other, one, margin)
    for why in ("pass rate", "p95 latency"):
        assert not (any(r.startswith(why) for r in forward.reasons)
                    and any(r.startswith(why) for r in backward.reasons))
    assert not set(forward.personas) & set(backward.personas)


@FAST
@given(small, st.integers(2, 60), st.integers(2, 60), st.sampled_from(["pass", "mixed"]))
def test_one_persona_failing_every_call_it_passed_fails_the_gate_and_is_named(plan: RunPlan, before: int, after: int,
                                                                          others: str):
    """3/3 -> 0/3 is Fisher p = 0.1 and pooled with passing personas far from significant: no user
    would ship it, so the gate fails, naming the persona and the checks that newly fail."""
    broken = PersonaPlan("broken-persona", before, "pass")
    rest = tuple(PersonaPlan(p.persona_id, p.calls, others) for p in plan.personas if p.persona_id != broken.persona_id)
    base_calls = results(RunPlan((broken, *rest), plan.seed, plan.voice))
    cand_calls = [r for r in base_calls if r.persona_id != broken.persona_id]  # the others exactly as before
    cand_calls += results(RunPlan((PersonaPlan(broken.persona_id, after, "fail"),), plan.seed + 1, plan.voice))
    base, cand = side_of(base_calls, "base"), side_of(cand_calls, "cand")
    decision = decide(base, cand, latency_margin_ms=1e9)
    assert decision.worse and decision.personas == ["broken-persona"]
    newly = {c.name for r in cand_calls if r.persona_id == broken.persona_id for c in r.checks if not c.passed}
    newly -= {c.name for r in base_calls if r.persona_id == broken.persona_id for c in r.checks if not c.passed}
    assert set(decision.newly_failing["broken-persona"]) == newly


@FAST
@given(small, small)
def test_comparison_tables_hold_probabilities_and_the_html_renders(a: RunPlan, b: RunPlan):
    base, cand = side_of(results(a), "base"), side_of(results(b), "cand")
    table = persona_comparison(base, cand)
    assert table["persona_id"].iloc[0] == ALL
    for column in ("p_value", "p_worse", "p_worse_holm"):
        assert table[column].between(0, 1 + 1e-12).all()
    assert (table["p_worse_holm"] >= table["p_worse"] - 1e-12).all()
    assert not (table["consistently_worse"] & ~table["regression"]).any()
    page = comparison_html(base, cand)
    assert ("is worse than" in page) == decide(base, cand).worse
