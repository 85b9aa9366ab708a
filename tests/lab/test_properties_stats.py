"""Property-based tests of the statistics behind every comparison and gate (voicelab/lab/stats.py):
over any counts and rates, not the few the bundled runs produce."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.lab import stats

from .test_experiments import brute_power

FAST = settings(max_examples=60, deadline=None)
counts = st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))
#: Pass rates as runs give them: a share of a few calls (twentieths keep the search cache warm).
rates = st.integers(0, 20).map(lambda k: k / 20)
probabilities = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(1e-9, 1 - 1e-9))


@FAST
@given(counts)
def test_a_wilson_interval_lies_in_0_1_and_holds_the_pass_rate(count: tuple[int, int]):
    passed, n = count
    low, high = stats.wilson(passed, n)
    assert 0.0 <= low <= passed / n <= high <= 1.0
    if passed == n:
        assert high == 1.0  # not 0.9999999999999999: a chart's error bar from it is never negative
    if passed == 0:
        assert low == 0.0


@FAST
@given(counts, counts)
def test_exact_p_values_are_probabilities_and_one_sided_tests_are_complementary(a, b):
    (x, n), (y, m) = a, b
    two, worse, better = (stats.exact_p(x, n, y, m, alternative=alt) for alt in ("two-sided", "greater", "less"))
    assert all(0.0 <= p <= 1.0 + 1e-12 for p in (two, worse, better))
    assert worse + better >= 1.0 - 1e-9  # P(X >= x) + P(X <= x) = 1 + P(X = x)
    assert not (stats.below_alpha(worse) and stats.below_alpha(better))


@settings(max_examples=25, deadline=None)
@given(probabilities, probabilities, st.integers(1, 9))
def test_fisher_power_is_the_brute_force_sum_over_every_outcome(a: float, b: float, n: int):
    high, low = max(a, b), min(a, b)
    assert math.isclose(stats.fisher_power(high, low, n), brute_power(high, low, n), abs_tol=1e-12)


@FAST
@given(rates, rates)
def test_calls_needed_is_symmetric_and_the_smallest_n_with_80_percent_power(a: float, b: float):
    n = stats.calls_needed(a, b)
    if a == b:
        assert n is None
        return
    assert n == stats.calls_needed(b, a) == stats.calls_needed(1 - b, 1 - a)
    assert 2 <= n <= stats.MAX_CALLS + 1
    high, low = max(a, b), min(a, b)
    if n <= stats.MAX_CALLS:
        assert stats.fisher_power(high, low, n) >= stats.POWER
    assert all(stats.fisher_power(high, low, m) < stats.POWER for m in range(2, min(n, 60)))


@FAST
@given(rates, rates, rates)
def test_a_bigger_difference_never_needs_more_calls(base: float, near: float, far: float):
    near, far = sorted((near, far), key=lambda r: abs(r - base))
    if abs(near - base) == abs(far - base) or (near - base) * (far - base) < 0 or near == base:
        return  # compare only differences in the same direction, the far one strictly bigger
    assert stats.calls_needed(base, far) <= stats.calls_needed(base, near)


@settings(max_examples=10, deadline=None)  # multipletests collects garbage on every call: slow
@given(st.lists(st.one_of(st.floats(0, 1), st.just(math.nan)), max_size=12))
def test_holm_adjusted_p_values_follow_the_step_down_rule(values: list[float]):
    """Holm (1979): the i-th smallest of m p-values times (m - i + 1), kept non-decreasing, at most 1."""
    adjusted = stats.holm(values)
    assert len(adjusted) == len(values)
    known = sorted((p, i) for i, p in enumerate(values) if p == p)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        assert math.isclose(adjusted[i], running, abs_tol=1e-12)
    assert all(math.isnan(adjusted[i]) for i, p in enumerate(values) if p != p)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 5000), max_size=40), st.lists(st.floats(0, 5000), max_size=40), st.sampled_from([50, 95]))
def test_a_latency_difference_changes_sign_with_the_sides(a: list[float], b: list[float], q: int):
    forward, backward = stats.bootstrap_difference(a, b, q), stats.bootstrap_difference(b, a, q)
    assert (math.isnan(forward[0]) and math.isnan(backward[0])) or forward[0] == -backward[0]
    if len(a) >= 2 and len(b) >= 2:
        assert forward[1] <= forward[2]
