"""The Mann-Whitney U test on two binned samples, and the runs it needs for 80% power.

Values in one bin are ties: each gets the bin's mid-rank, and the variance takes the usual tie
correction, so the answer is SciPy's `mannwhitneyu(x, y, method="asymptotic")` (two-sided, with
continuity correction) for samples whose values are the bins' representatives. On raw values the
bins (0.5% relative width) change p-values only in their last digits: tests/unit/test_statistics.py
checks both. O(bins), whatever the number of runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from services.common.statistics.binned import BinnedSample


@dataclass(frozen=True)
class RankTest:
    u_b: float  # U of sample b: pairs where b's value is larger, ties counting a half
    p_value: float
    superiority: float  # P(B > A) + P(B = A)/2, the common-language effect size; 0.5: no effect

    @property
    def b_larger(self) -> bool:
        return self.superiority > 0.5


def mann_whitney_u(a: BinnedSample, b: BinnedSample) -> RankTest:
    """Two-sided asymptotic Mann-Whitney U (Mann & Whitney 1947), with tie and continuity corrections
    as SciPy computes them."""
    n_a, n_b = a.n, b.n
    if n_a == 0 or n_b == 0:
        return RankTest(math.nan, 1.0, 0.5)
    grid = np.union1d(a.values, b.values)
    count_a = np.zeros(grid.size)
    count_b = np.zeros(grid.size)
    count_a[np.searchsorted(grid, a.values)] = a.counts
    count_b[np.searchsorted(grid, b.values)] = b.counts
    ties = count_a + count_b
    before = np.cumsum(ties) - ties
    mid_rank = before + (ties + 1) / 2
    n = n_a + n_b
    u_b = float(np.dot(count_b, mid_rank)) - n_b * (n_b + 1) / 2
    mean = n_a * n_b / 2
    tie_term = float(np.sum(ties**3 - ties)) / (n * (n - 1)) if n > 1 else 0.0
    variance = n_a * n_b / 12 * ((n + 1) - tie_term)
    superiority = u_b / (n_a * n_b)
    if variance <= 0:  # every value the same
        return RankTest(u_b, 1.0, superiority)
    z = (max(u_b, n_a * n_b - u_b) - mean - 0.5) / math.sqrt(variance)
    return RankTest(u_b, min(1.0, 2 * float(stats.norm.sf(z))), superiority)


def rank_samples_needed(superiority: float, alpha: float, power: float = 0.8) -> int | None:
    """Runs per arm for the U test to find an effect of this size with `power` (Noether 1987, "Sample
    size determination for some common nonparametric tests", JASA 82:645–647, equal arms)."""
    effect = superiority - 0.5
    if not math.isfinite(effect) or abs(effect) < 1e-9:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil(z**2 / (6 * effect**2))
