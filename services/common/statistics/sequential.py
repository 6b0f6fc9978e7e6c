"""Anytime-valid inference for experiments: intervals a user may look at every minute.

Asymptotic confidence sequences after Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform
central limit theory and asymptotic confidence sequences" (2021, arXiv:2103.06476), as GrowthBook's
gbstats computes them (`sequential_interval_halfwidth`, `sequential_rho`): for a mean of n
observations with per-observation variance s², the half-width at level α is

    sqrt(s²) · sqrt( 2(nρ² + 1) / (n²ρ²) · log( sqrt(nρ² + 1) / α ) ),
    ρ = sqrt( (−2 log α + log(−2 log α + 1)) / N* ),

where the tuning constant N* is the sample size at which the sequence is tightest. We use
GrowthBook's default, N* = 5,000. For the difference of two arms' means, n is the two arms'
total and s² = n · (s_a²/n_a + s_b²/n_b), the difference's variance scaled to one observation.

Probability of being best: each arm's mean as a normal with its standard error, as GrowthBook's
Bayesian engine approximates arms (its "chance to win"), drawn jointly with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import log, sqrt

import numpy as np

TUNING = 5_000  # N*: GrowthBook's default sequential tuning parameter
DRAWS = 20_000


@dataclass(frozen=True)
class ArmMoments:
    """An arm's sample size, mean and sample standard deviation (for a rate: p and sqrt(p(1−p)))."""

    n: int
    mean: float
    std: float

    @property
    def variance_of_mean(self) -> float:
        return self.std**2 / self.n if self.n else float("inf")


def rho(alpha: float, tuning: float = TUNING) -> float:
    return sqrt((-2 * log(alpha) + log(-2 * log(alpha) + 1)) / tuning)


def halfwidth(s2: float, n: int, alpha: float = 0.05, tuning: float = TUNING) -> float:
    """The confidence sequence's half-width for a mean of n observations of variance s²."""
    if n <= 0:
        return float("inf")
    r = rho(alpha, tuning)
    return sqrt(s2) * sqrt((2 * (n * r**2 + 1)) / (n**2 * r**2) * log(sqrt(n * r**2 + 1) / alpha))


def mean_sequence(arm: ArmMoments, alpha: float = 0.05) -> tuple[float, float]:
    """An anytime-valid (1−α) interval of one arm's mean."""
    h = halfwidth(arm.std**2, arm.n, alpha)
    return arm.mean - h, arm.mean + h


def difference_sequence(a: ArmMoments, b: ArmMoments, alpha: float = 0.05) -> tuple[float, float]:
    """An anytime-valid (1−α) interval of b's mean minus a's."""
    n = a.n + b.n
    s2 = n * (a.variance_of_mean + b.variance_of_mean)
    h = halfwidth(s2, n, alpha)
    d = b.mean - a.mean
    return d - h, d + h


def probability_best(arms: Sequence[ArmMoments], higher_is_better: bool, seed: int = 0) -> list[float]:
    """Each arm's chance of having the best true mean, under normal approximations of the means."""
    if not arms:
        return []
    rng = np.random.default_rng(seed)
    means = np.array([a.mean for a in arms])
    errors = np.sqrt([a.variance_of_mean if a.n > 1 else 1e300 for a in arms])
    draws = rng.standard_normal((DRAWS, len(arms))) * errors + means
    best = draws.argmax(axis=1) if higher_is_better else draws.argmin(axis=1)
    return (np.bincount(best, minlength=len(arms)) / DRAWS).tolist()


def sample_ratio(observed: Sequence[int], weights: Sequence[float]) -> float:
    """The p-value of a chi-square test of the arms' counts against their declared weights
    (sample-ratio mismatch, as GrowthBook, Statsig and Eppo check it; a mismatch at p < 0.001)."""
    from scipy import stats

    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return 1.0
    expected = np.asarray(weights, dtype=float) / sum(weights) * total
    return float(stats.chisquare(np.asarray(observed, dtype=float), expected).pvalue)
