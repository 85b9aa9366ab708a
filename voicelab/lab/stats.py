"""The statistics behind experiments and `voicelab compare`, each from a well-kept library and
named where it is shown (`METHODS`), so a reader can check what was computed.

Calls are few and pass rates sit near 0 or 1, where textbook normal approximations fail: hence
Wilson intervals, exact tests (and exact power for them), and percentile bootstraps for latency
quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import stats as sps
from scipy.special import gammaln, xlogy
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_RESAMPLES = 2000
#: The sample-size search stops here: beyond it the answer is "more than MAX_CALLS per side".
MAX_CALLS = 500
#: A p-value within this relative distance of alpha counts as equal to it (not below): exact
#: p-values such as 1/20 come out of floating point as 0.05000000000000001 or 0.04999999999999999.
_REL_TOL = 1e-9

METHODS = {
    "interval": "95% Wilson score interval (statsmodels proportion_confint, method='wilson'), clamped to [0, 1]",
    "difference": "Fisher's exact test, two-sided (scipy.stats.fisher_exact); the CI gate uses the one-sided "
                  "test that the candidate succeeds less often, over all calls and per persona",
    "persona gate": "a persona is worse when its one-sided Fisher p, Holm-adjusted over the personas both "
                    "sides have (statsmodels multipletests, method='holm'), is under 0.05, or when it passed "
                    "every baseline call and fails every candidate call with at least 2 calls on each side",
    "latency": "difference of the candidates' and the baseline's statistic, 95% percentile bootstrap "
               f"interval ({BOOTSTRAP_RESAMPLES} resamples, scipy.stats.bootstrap)",
    "power": "calls per side for 80% power of the one-sided Fisher exact test at alpha 0.05 at the observed "
             "pass rates: the smallest n whose power, computed exactly over every binomial outcome, reaches "
             f"80% (searched up to {MAX_CALLS} per side)",
}


def below_alpha(p: float, alpha: float = ALPHA) -> bool:
    """p < alpha, where a p-value equal to alpha up to rounding is not below it; False for nan."""
    return bool(p < alpha * (1 - _REL_TOL)) if p == p else False


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a pass rate; (nan, nan) without calls. Clamped so that
    0 <= low <= successes/n <= high <= 1: the library gives 0.9999999999999999 for 7/7, and an
    error bar drawn from it would be negative."""
    if n == 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, n, alpha=ALPHA, method="wilson")
    rate = successes / n
    return float(min(max(low, 0.0), rate)), float(max(min(high, 1.0), rate))


def exact_p(base_passed: int, base_n: int, cand_passed: int, cand_n: int,
            alternative: str = "two-sided") -> float:
    """Fisher's exact test of two pass rates. `alternative="greater"`: the p-value that the
    baseline succeeds more often than the candidate (the candidate is worse). nan without calls."""
    if base_n == 0 or cand_n == 0:
        return math.nan
    table = [[base_passed, base_n - base_passed], [cand_passed, cand_n - cand_passed]]
    return float(sps.fisher_exact(table, alternative=alternative).pvalue)


def _quantile(q: float):  # noqa: ANN202 - a vectorised statistic for scipy.stats.bootstrap
    def statistic(base: np.ndarray, cand: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.percentile(cand, q, axis=axis) - np.percentile(base, q, axis=axis)
    return statistic


def bootstrap_difference(base: Sequence[float], cand: Sequence[float], q: float,
                         seed: int = 0) -> tuple[float, float, float]:
    """(candidate - baseline) of the q-th percentile, with a 95% percentile-bootstrap interval;
    the interval is (nan, nan) with fewer than 2 values on a side, everything nan with none."""
    a, b = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    if not len(a) or not len(b):
        return math.nan, math.nan, math.nan
    estimate = float(np.percentile(b, q) - np.percentile(a, q))
    if len(a) < 2 or len(b) < 2:
        return estimate, math.nan, math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread: every resample gives the estimate
        return estimate, estimate, estimate
    result = sps.bootstrap((a, b), _quantile(q), paired=False, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                           confidence_level=1 - ALPHA, method="percentile", rng=np.random.default_rng(seed))
    return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels multipletests), nan kept as nan; one p-value is its
    own adjustment (and skips multipletests, which runs a full garbage collection per call)."""
    values = [float(p) for p in p_values]
    known = [i for i, p in enumerate(values) if p == p]
    out = [math.nan] * len(values)
    if len(known) == 1:
        out[known[0]] = values[known[0]]
    elif known:
        adjusted = multipletests([values[i] for i in known], alpha=ALPHA, method="holm")[1]
        for i, p in zip(known, adjusted, strict=True):
            out[i] = float(p)
    return out


@lru_cache(maxsize=1)
def _log_factorials(up_to: int) -> np.ndarray:
    return gammaln(np.arange(up_to + 1, dtype=float) + 1)


def _log_binom(n: int, p: float, log_c: np.ndarray) -> np.ndarray:
    """log P(k successes of n) for k = 0..n at success rate p (0 and 1 allowed)."""
    k = np.arange(n + 1)
    return log_c + xlogy(k, p) + xlogy(n - k, 1 - p)


def fisher_power(p_high: float, p_low: float, n: int, alpha: float = ALPHA) -> float:
    """Exact power of the one-sided Fisher test (`exact_p(..., "greater")` below alpha) that a side
    passing with probability `p_high` succeeds more often than one passing with `p_low`, with n
    calls each: the binomial probability of every outcome pair in the test's rejection region.

    Given t successes in all, the first side's count x is hypergeometric (mean t/2) under the null
    and the test rejects when its upper tail from x is below alpha, i.e. x >= c(t). Each c(t) is
    found by summing the tail from 12 standard deviations above the mean down to the mean, every t
    at once (what lies beyond is below 1e-15 by Hoeffding's bound, far under the tolerance of
    `below_alpha`); outcomes whose binomial probability is below 1e-18 of the likeliest are left
    out (together under 1e-15)."""
    if n < 1:
        return 0.0
    lf = _log_factorials(2 * max(n, MAX_CALLS))
    k = np.arange(n + 1)
    log_c = lf[n] - lf[k] - lf[n - k]  # log C(n, k)
    b_high, b_low = np.exp(_log_binom(n, p_high, log_c)), np.exp(_log_binom(n, p_low, log_c))
    xs = np.flatnonzero(b_high > 1e-18 * b_high.max())
    ys = np.flatnonzero(b_low > 1e-18 * b_low.max())
    xs, ys = np.arange(xs[0], xs[-1] + 1), np.arange(ys[0], ys[-1] + 1)
    t = np.arange(xs[0] + ys[0], xs[-1] + ys[-1] + 1)  # every total the likely outcomes make
    floor, top = np.maximum(t - n, 0), np.minimum(t, n)
    sd = np.sqrt(t * (2 * n - t) / (4 * max(2 * n - 1, 1)))
    start = np.minimum(top, np.ceil(t / 2 + 12 * sd + 1).astype(int))
    depth = int(np.max(start - np.maximum(floor, t // 2 - 1))) + 1
    x = start[:, None] - np.arange(depth)[None, :]  # per total (rows): counts from the far end down
    valid = x >= floor[:, None]
    x = np.where(valid, x, floor[:, None])
    log_c2 = (lf[2 * n] - lf[t] - lf[2 * n - t])[:, None]  # log C(2n, t)
    tail = np.cumsum(np.where(valid, np.exp(log_c[x] + log_c[t[:, None] - x] - log_c2), 0.0), axis=1)
    critical = start + 1 - np.sum(valid & (tail < alpha * (1 - _REL_TOL)), axis=1)  # c(t)
    reject = xs[:, None] >= critical[xs[:, None] + ys[None, :] - t[0]]
    return min(float(np.sum(np.where(reject, b_high[xs][:, None] * b_low[ys][None, :], 0.0))), 1.0)


def calls_needed(p_base: float, p_cand: float, cap: int = MAX_CALLS) -> int | None:
    """Calls per side for a one-sided Fisher exact test (alpha 0.05) to tell `p_base` from `p_cand`
    with 80% power: the smallest n whose exact power reaches it (power is not monotone in n for a
    discrete test, so every n from 2 is tried). None when the rates are equal (nothing to detect);
    `cap + 1` when even `cap` calls per side are not enough (shown as "more than 500")."""
    if any(p != p for p in (p_base, p_cand)) or abs(p_base - p_cand) < 1e-12:
        return None
    return _calls_needed(max(p_base, p_cand), min(p_base, p_cand), cap)


@lru_cache(maxsize=4096)
def _calls_needed(p_high: float, p_low: float, cap: int) -> int:
    for n in range(2, cap + 1):
        if fisher_power(p_high, p_low, n) >= POWER:
            return n
    return cap + 1


def needed_text(n: int | None, cap: int = MAX_CALLS) -> str:
    """A calls_needed figure for people: "" for none, "more than 500" past the search's cap."""
    if n is None or n != n:
        return ""
    return f"more than {cap}" if n > cap else str(int(n))
