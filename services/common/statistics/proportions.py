"""Two proportions (error rates, boolean scores): the test, the interval of their difference, the runs needed.

The test is the pooled two-proportion z test; where an expected cell count is below 5 its normal
approximation is poor, and Fisher's exact test is used instead (Agresti 2007, §2.6). The interval of
b − a is Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation for the difference
between independent proportions", Stat. Med. 17:873–890, method 10), which keeps its coverage at
small counts where the Wald interval does not. Runs needed: Fleiss, Levin & Paik (2003), eq. 4.14.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class ProportionTest:
    rate_a: float
    rate_b: float
    ci95: tuple[float, float]  # of b − a
    p_value: float
    test: str  # "two_proportion_z" or "fisher_exact"

    @property
    def difference(self) -> float:
        return self.rate_b - self.rate_a


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval of one proportion (Wilson 1927)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def compare_proportions(successes_a: int, n_a: int, successes_b: int, n_b: int) -> ProportionTest:
    """b's rate against a's (both n > 0)."""
    p_a, p_b = successes_a / n_a, successes_b / n_b
    low_a, high_a = wilson(successes_a, n_a)
    low_b, high_b = wilson(successes_b, n_b)
    difference = p_b - p_a
    ci = (
        difference - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2),
        difference + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2),
    )
    pooled = (successes_a + successes_b) / (n_a + n_b)
    expected = (n_a * pooled, n_a * (1 - pooled), n_b * pooled, n_b * (1 - pooled))
    if min(expected) < 5:
        table = [[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]]
        p_value = float(stats.fisher_exact(table).pvalue)
        return ProportionTest(p_a, p_b, ci, p_value, "fisher_exact")
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p_value = 2 * float(stats.norm.sf(abs(difference) / se)) if se > 0 else 1.0
    return ProportionTest(p_a, p_b, ci, min(1.0, p_value), "two_proportion_z")


def proportion_samples_needed(rate_a: float, rate_b: float, alpha: float, power: float = 0.8) -> int | None:
    """Runs per arm for the z test to find rates this far apart with `power` (equal arms)."""
    if rate_a == rate_b:
        return None
    z_alpha, z_beta = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    mean = (rate_a + rate_b) / 2
    spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_beta * math.sqrt(
        rate_a * (1 - rate_a) + rate_b * (1 - rate_b)
    )
    return math.ceil(spread**2 / (rate_a - rate_b) ** 2)


def compare_distributions(counts_a: dict[str, int], counts_b: dict[str, int]) -> tuple[float, float]:
    """Chi-square test of independence of two categorical distributions (Pearson 1900): (p-value, total
    variation distance between the two arms' shares)."""
    categories = sorted(c for c in counts_a.keys() | counts_b.keys() if counts_a.get(c, 0) + counts_b.get(c, 0))
    n_a, n_b = sum(counts_a.values()), sum(counts_b.values())
    distance = 0.5 * sum(abs(counts_b.get(c, 0) / n_b - counts_a.get(c, 0) / n_a) for c in categories)
    if len(categories) < 2:
        return 1.0, distance
    table = [[counts_a.get(c, 0) for c in categories], [counts_b.get(c, 0) for c in categories]]
    return float(stats.chi2_contingency(table, correction=False).pvalue), distance
