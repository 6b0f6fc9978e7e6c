"""Paired tests for versions run on the same dataset items: each item is its own control, so the
spread between items (easy and hard questions) drops out and a real difference shows with far fewer
items than an unpaired test needs.

- Numeric metrics and scores: Wilcoxon's signed-rank test on the per-item differences b − a
  (Wilcoxon 1945; SciPy's `wilcoxon`, zero differences dropped as Wilcoxon did), the median
  difference as the estimate, and a percentile bootstrap interval of it (Efron 1979; 2,000
  resamples, a fixed seed so that one answer is always the same).
- Booleans (pass/fail, error): McNemar's test on the discordant pairs, in its exact binomial form
  (McNemar 1947; Fagerland, Lydersen and Laake 2013 recommend the exact or mid-p version for small
  counts), the difference in rates with its Wald interval for paired proportions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 2_000


@dataclass(frozen=True)
class PairedTest:
    pairs: int
    estimate_a: float | None
    estimate_b: float | None
    difference: float | None
    ci95: tuple[float, float] | None
    p_value: float | None
    test: str
    direction: int = 0  # +1: b's values are larger, −1: smaller, 0: unknown


def wilcoxon_signed_rank(a: np.ndarray, b: np.ndarray, seed: int = 0) -> PairedTest:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = a.size
    if n == 0:
        return PairedTest(0, None, None, None, None, None, "wilcoxon_signed_rank")
    d = b - a
    p = 1.0 if not np.any(d) else float(stats.wilcoxon(d).pvalue)
    rng = np.random.default_rng(seed)
    boots = np.median(d[rng.integers(0, n, size=(RESAMPLES, n))], axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    # the side the signed ranks lean to (the median difference can be 0 while they lean)
    ranks = stats.rankdata(np.abs(d[d != 0]))
    lean = float(ranks[d[d != 0] > 0].sum() - ranks[d[d != 0] < 0].sum()) if ranks.size else 0.0
    return PairedTest(
        n,
        float(np.median(a)),
        float(np.median(b)),
        float(np.median(d)),
        (float(low), float(high)),
        p,
        "wilcoxon_signed_rank",
        int(np.sign(lean)),
    )


def mcnemar(a: np.ndarray, b: np.ndarray) -> PairedTest:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n = a.size
    if n == 0:
        return PairedTest(0, None, None, None, None, None, "mcnemar")
    only_b = int(np.sum(b & ~a))  # true for b, false for a
    only_a = int(np.sum(a & ~b))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(stats.binomtest(only_b, discordant, 0.5).pvalue)
    diff = (only_b - only_a) / n
    se = float(np.sqrt(max(discordant - (only_b - only_a) ** 2 / n, 0.0))) / n
    ci = (diff - 1.96 * se, diff + 1.96 * se)
    return PairedTest(n, float(a.mean()), float(b.mean()), diff, ci, p, "mcnemar", int(np.sign(only_b - only_a)))
