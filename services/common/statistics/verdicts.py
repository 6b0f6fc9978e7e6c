"""One COMPARISON per metric and statistic, and their verdicts, Holm-corrected across the family.

A verdict is `b_better` or `b_worse` when the test rejects "no difference" after Holm's correction
at α, in the direction the metric counts as better. Otherwise it is `no_difference` when the 95%
interval of b − a lies within ±5% of the larger estimate (an equivalence margin, as GrowthBook's
"practically equal" and Eppo's "within the minimum detectable effect" read a flat result), and
`not_enough_data` when it does not: then `samples_needed` says how many runs per arm would find the
observed difference with 80% power. An arm with fewer than MIN_SAMPLES values is always
`not_enough_data`: asymptotic tests say little about ten runs.

A categorical score's distribution has no better or worse: its verdict is `different` when the
chi-square test rejects, `no_difference` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.common.statistics.binned import BinnedSample
from services.common.statistics.holm import holm
from services.common.statistics.paired import PairedTest
from services.common.statistics.proportions import (
    compare_distributions,
    compare_proportions,
    proportion_samples_needed,
)
from services.common.statistics.quantiles import compare_quantile, quantile_samples_needed
from services.common.statistics.rank import mann_whitney_u, rank_samples_needed

MIN_SAMPLES = 30
EQUIVALENCE_MARGIN = 0.05
# An absolute floor for rates: a 0.2% error rate's 5% is 0.01 points, which no test of days can resolve.
RATE_MARGIN_FLOOR = 0.005
Better = Literal["lower", "higher"]
Verdict = Literal["b_better", "b_worse", "no_difference", "not_enough_data", "different"]


@dataclass(frozen=True)
class Arm:
    """One version's values of a metric: a binned sample, a proportion, or categorical counts."""

    sample: BinnedSample | None = None
    successes: int = 0
    trials: int = 0
    categories: dict[str, int] | None = None

    @property
    def n(self) -> int:
        if self.sample is not None:
            return self.sample.n
        if self.categories is not None:
            return sum(self.categories.values())
        return self.trials


@dataclass
class Comparison:
    metric: str
    statistic: str  # "median", "p95", "rate" or "distribution"
    better: Better
    a: Arm
    b: Arm
    estimate_a: float | None = None
    estimate_b: float | None = None
    difference: float | None = None
    ci95: tuple[float, float] | None = None
    p_value: float | None = None
    test: str | None = None
    verdict: Verdict = "not_enough_data"
    samples_needed: int | None = None
    p_value_holm: float | None = None
    paired: PairedTest | None = None  # a paired test already run (versions on the same dataset items)
    _direction: int = 0  # +1: b's values are larger, −1: smaller, 0: unknown

    @property
    def relative_difference(self) -> float | None:
        if self.difference is None or not self.estimate_a:
            return None
        return self.difference / abs(self.estimate_a)

    def body(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "statistic": self.statistic,
            "better": self.better,
            "a": {"n": self.a.n, "estimate": self.estimate_a},
            "b": {"n": self.b.n, "estimate": self.estimate_b},
            "difference": self.difference,
            "relative_difference": self.relative_difference,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "p_value": self.p_value,
            "p_value_holm": self.p_value_holm,
            "test": self.test,
            "verdict": self.verdict,
            "samples_needed": self.samples_needed,
            **({"pairs": self.paired.pairs} if self.paired is not None else {}),
        }


_QUANTILE = {"median": 0.5, "p95": 0.95, "p99": 0.99}


def measure(c: Comparison) -> Comparison:
    """Estimates, interval and raw p-value of one comparison (verdicts come from `decide`)."""
    a, b = c.a, c.b
    if c.paired is not None:
        pt = c.paired
        c.estimate_a, c.estimate_b, c.difference, c.ci95 = pt.estimate_a, pt.estimate_b, pt.difference, pt.ci95
        c.p_value, c.test, c._direction = pt.p_value, pt.test, pt.direction
        return c
    if c.statistic == "rate":
        if a.trials and b.trials:
            t = compare_proportions(a.successes, a.trials, b.successes, b.trials)
            c.estimate_a, c.estimate_b, c.difference, c.ci95 = t.rate_a, t.rate_b, t.difference, t.ci95
            c.p_value, c.test, c._direction = t.p_value, t.test, _sign(t.difference)
        return c
    if c.statistic == "distribution":
        if a.categories and b.categories:
            c.p_value, c.difference = compare_distributions(a.categories, b.categories)
            c.test = "chi_square"
        return c
    if a.sample is None or b.sample is None or not a.sample.n or not b.sample.n:
        return c
    q = _QUANTILE[c.statistic]
    quantile = compare_quantile(a.sample, b.sample, q)
    c.estimate_a, c.estimate_b, c.difference, c.ci95 = (
        quantile.estimate_a,
        quantile.estimate_b,
        quantile.difference,
        quantile.ci95,
    )
    if c.statistic == "median":  # the rank test: more power than the bootstrap's, and exact on ties
        rank = mann_whitney_u(a.sample, b.sample)
        c.p_value, c.test = rank.p_value, "mann_whitney_u"
        c._direction = _sign(rank.superiority - 0.5)
    else:
        c.p_value, c.test, c._direction = quantile.p_value, "bootstrap", _sign(quantile.difference)
    return c


def decide(comparisons: Sequence[Comparison], alpha: float = 0.05) -> list[Comparison]:
    """Measure every comparison, then give each its Holm-corrected verdict."""
    for c in comparisons:
        measure(c)
    tested = [c for c in comparisons if c.p_value is not None and min(c.a.n, c.b.n) >= MIN_SAMPLES]
    adjusted = holm([c.p_value for c in tested])  # type: ignore[misc]
    for c, p_holm in zip(tested, adjusted, strict=True):
        c.p_value_holm = p_holm
        c.verdict = _verdict(c, p_holm <= alpha)
    for c in comparisons:
        if c.verdict == "not_enough_data" and c.statistic != "distribution":
            c.samples_needed = _samples_needed(c, alpha)
        else:
            c.samples_needed = None
    return list(comparisons)


def _verdict(c: Comparison, rejected: bool) -> Verdict:
    if c.statistic == "distribution":
        return "different" if rejected else "no_difference"
    if rejected and c._direction:
        b_higher = c._direction > 0
        return "b_better" if b_higher == (c.better == "higher") else "b_worse"
    if c.ci95 is not None and _within_margin(c):
        return "no_difference"
    return "not_enough_data"


def _within_margin(c: Comparison) -> bool:
    scale = max(abs(c.estimate_a or 0.0), abs(c.estimate_b or 0.0))
    margin = EQUIVALENCE_MARGIN * scale
    if c.statistic == "rate":
        margin = max(margin, RATE_MARGIN_FLOOR)
    assert c.ci95 is not None
    return -margin <= c.ci95[0] and c.ci95[1] <= margin


def _samples_needed(c: Comparison, alpha: float) -> int | None:
    if c.paired is not None:  # the unpaired formulas do not apply to pairs
        return None
    if c.statistic == "rate":
        if c.estimate_a is None or c.estimate_b is None:
            return None
        return proportion_samples_needed(c.estimate_a, c.estimate_b, alpha)
    if c.a.sample is None or c.b.sample is None or not c.a.sample.n or not c.b.sample.n:
        return None
    if c.statistic == "median":
        return rank_samples_needed(mann_whitney_u(c.a.sample, c.b.sample).superiority, alpha)
    test = compare_quantile(c.a.sample, c.b.sample, _QUANTILE[c.statistic])
    return quantile_samples_needed(test, c.a.sample.n, c.b.sample.n, alpha)


def _sign(x: float) -> int:
    return 0 if x == 0 or math.isnan(x) else (1 if x > 0 else -1)
