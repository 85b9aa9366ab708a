"""The statistics behind experiments and `voicelab compare`, each from a well-kept library and
named where it is shown (`METHODS`), so a reader can check what was computed.

Calls are few and pass rates sit near 0 or 1, where textbook normal approximations fail: hence
Wilson intervals, exact tests, and percentile bootstraps for latency quantiles.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_RESAMPLES = 2000

METHODS = {
    "interval": "95% Wilson score interval (statsmodels proportion_confint, method='wilson')",
    "difference": "Fisher's exact test, two-sided (scipy.stats.fisher_exact); the CI gate uses the one-sided "
                  "test that the candidate succeeds less often",
    "latency": "difference of the candidates' and the baseline's statistic, 95% percentile bootstrap "
               f"interval ({BOOTSTRAP_RESAMPLES} resamples, scipy.stats.bootstrap)",
    "power": "calls per variant for 80% power at alpha 0.05 (statsmodels NormalIndPower, Cohen's h)",
}


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a pass rate; (nan, nan) without calls."""
    if n == 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, n, alpha=ALPHA, method="wilson")
    return float(low), float(high)


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


def calls_needed(p_base: float, p_cand: float) -> int | None:
    """Calls per variant to tell `p_base` from `p_cand` (two-sided, 80% power, alpha 0.05);
    None when they are equal (no difference to detect)."""
    if any(math.isnan(p) for p in (p_base, p_cand)):
        return None
    h = abs(float(proportion_effectsize(p_base, p_cand)))
    if h < 1e-9:
        return None
    with warnings.catch_warnings():  # its root finder warns before giving up on huge effects
        warnings.simplefilter("ignore")
        n = NormalIndPower().solve_power(effect_size=h, alpha=ALPHA, power=POWER, ratio=1.0,
                                         alternative="two-sided")
    if not math.isfinite(n):  # the solver gives up on huge effects (n < 2): the normal formula it solves
        n = 2 * ((sps.norm.ppf(1 - ALPHA / 2) + sps.norm.ppf(POWER)) / h) ** 2
    return max(2, int(math.ceil(n)))
