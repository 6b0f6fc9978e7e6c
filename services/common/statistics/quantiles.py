"""A quantile's difference between two binned samples: its 95% interval and p-value by the exact bootstrap.

Resampling n values from a binned sample with replacement, its order statistic at rank r is at most
the j-th bin's value exactly when at least r + 1 draws fall at or below that bin, a binomial event:
so each arm's bootstrap distribution of the quantile is known in closed form, with no Monte-Carlo
draws (Hutson & Ernst 2000, "The exact bootstrap mean and variance of an L-estimator", JRSS B 62:
89–94). The difference's distribution is the two arms' convolution; its 2.5% and 97.5% points are the
percentile-bootstrap interval (Efron & Tibshirani 1993, ch. 13), and twice its smaller tail beyond
zero is the bootstrap p-value. Deterministic (the same data give the same answer) and O(bins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from services.common.statistics.binned import BinnedSample

# Bootstrap mass below this is dropped before the convolution (it keeps the pairs to a few thousand).
_NEGLIGIBLE = 1e-10


@dataclass(frozen=True)
class QuantileTest:
    estimate_a: float
    estimate_b: float
    ci95: tuple[float, float]  # of b − a
    p_value: float
    standard_error: float  # of b − a, from the bootstrap distribution

    @property
    def difference(self) -> float:
        return self.estimate_b - self.estimate_a


def bootstrap_distribution(sample: BinnedSample, q: float) -> tuple[np.ndarray, np.ndarray]:
    """The values the resampled q-quantile can take and their probabilities."""
    n = sample.n
    rank = math.floor(q * (n - 1))
    below = np.cumsum(sample.counts) / n
    cdf = stats.binom.sf(rank, n, below)  # P(at least rank + 1 of n draws are at or below each value)
    cdf[-1] = 1.0
    mass = np.diff(cdf, prepend=0.0)
    keep = mass > _NEGLIGIBLE
    return sample.values[keep], mass[keep] / mass[keep].sum()


def compare_quantile(a: BinnedSample, b: BinnedSample, q: float) -> QuantileTest:
    """b's q-quantile against a's (both non-empty)."""
    values_a, mass_a = bootstrap_distribution(a, q)
    values_b, mass_b = bootstrap_distribution(b, q)
    differences = np.subtract.outer(values_b, values_a).ravel()
    weights = np.multiply.outer(mass_b, mass_a).ravel()
    order = np.argsort(differences, kind="stable")
    differences, weights = differences[order], weights[order]
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    low = float(differences[min(int(np.searchsorted(cumulative, 0.025)), differences.size - 1)])
    high = float(differences[min(int(np.searchsorted(cumulative, 0.975)), differences.size - 1)])
    at_or_below = float(weights[differences <= 0].sum())
    at_or_above = float(weights[differences >= 0].sum())
    mean = float(np.dot(differences, weights))
    se = math.sqrt(max(float(np.dot((differences - mean) ** 2, weights)), 0.0))
    estimate_a, estimate_b = a.quantile(q), b.quantile(q)
    assert estimate_a is not None and estimate_b is not None
    return QuantileTest(estimate_a, estimate_b, (low, high), min(1.0, 2 * min(at_or_below, at_or_above)), se)


def quantile_samples_needed(test: QuantileTest, n_a: int, n_b: int, alpha: float, power: float = 0.8) -> int | None:
    """Runs per arm to find the observed difference with `power`: the standard error shrinks as 1/√n."""
    if test.difference == 0 or test.standard_error == 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n_now = 2 / (1 / n_a + 1 / n_b)  # the equal-arm size with the same standard error
    return math.ceil(n_now * (z * test.standard_error / abs(test.difference)) ** 2)
