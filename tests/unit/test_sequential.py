"""Calibration of the experiments' statistics by seeded simulation: anytime-valid intervals keep
their error rate however often a user looks, the sample-ratio check flags a broken split and only
rarely a sound one, and the probability of being best favours the better arm."""

from __future__ import annotations

import numpy as np

from services.common.statistics.sequential import (
    ArmMoments,
    difference_sequence,
    mean_sequence,
    probability_best,
    sample_ratio,
)

TRIALS = 200
LOOKS = 50
PER_LOOK = 100  # runs per arm between two looks


def _moments_at_looks(x: np.ndarray) -> list[ArmMoments]:
    """An arm's moments after each look, from its values in arrival order."""
    out = []
    for k in range(1, LOOKS + 1):
        seen = x[: k * PER_LOOK]
        out.append(ArmMoments(seen.size, float(seen.mean()), float(seen.std(ddof=1))))
    return out


def _rejects_at_some_look(a: np.ndarray, b: np.ndarray, naive: bool = False) -> bool:
    for ma, mb in zip(_moments_at_looks(a), _moments_at_looks(b), strict=True):
        if naive:  # a fixed-horizon 95% interval, wrongly looked at every time
            half = 1.96 * np.sqrt(ma.variance_of_mean + mb.variance_of_mean)
            low, high = mb.mean - ma.mean - half, mb.mean - ma.mean + half
        else:
            low, high = difference_sequence(ma, mb)
        if low > 0 or high < 0:
            return True
    return False


def test_an_aa_experiment_peeked_fifty_times_stays_under_five_percent_false_positives() -> None:
    rng = np.random.default_rng(11)
    found = naive = 0
    for _ in range(TRIALS):
        a = rng.lognormal(6.5, 0.8, LOOKS * PER_LOOK)
        b = rng.lognormal(6.5, 0.8, LOOKS * PER_LOOK)
        found += _rejects_at_some_look(a, b)
        naive += _rejects_at_some_look(a, b, naive=True)
    assert found / TRIALS <= 0.05
    # the reason for the sequence: the same peeking with a fixed-horizon interval errs far more often
    assert naive / TRIALS > 0.10


def test_a_real_ten_percent_effect_is_found_while_peeking() -> None:
    rng = np.random.default_rng(12)
    found = sum(
        _rejects_at_some_look(
            rng.lognormal(6.5, 0.8, LOOKS * PER_LOOK), rng.lognormal(6.5, 0.8, LOOKS * PER_LOOK) * 1.1
        )
        for _ in range(40)
    )
    assert found / 40 >= 0.8


def test_the_mean_sequence_covers_the_true_mean_at_every_look() -> None:
    rng = np.random.default_rng(13)
    true_mean = np.exp(6.5 + 0.8**2 / 2)
    missed = 0
    for _ in range(TRIALS):
        x = rng.lognormal(6.5, 0.8, LOOKS * PER_LOOK)
        missed += any(not (lo <= true_mean <= hi) for lo, hi in map(mean_sequence, _moments_at_looks(x)))
    assert missed / TRIALS <= 0.05


def test_sample_ratio_check_flags_a_sixty_forty_split_declared_fifty_fifty_and_rarely_a_sound_one() -> None:
    rng = np.random.default_rng(14)
    assert sample_ratio([1200, 800], [50, 50]) < 0.001
    sound = [rng.binomial(2000, 0.5) for _ in range(1000)]
    flagged = sum(sample_ratio([k, 2000 - k], [50, 50]) < 0.001 for k in sound)
    assert flagged <= 5  # 0.1% expected
    assert sample_ratio([900, 100], [90, 10]) > 0.5


def test_probability_best_favours_the_better_arm_and_sums_to_one() -> None:
    a, b = ArmMoments(2000, 1.00, 0.5), ArmMoments(2000, 0.90, 0.5)
    lower = probability_best([a, b], higher_is_better=False)
    assert sum(lower) == 1.0 and lower[1] > 0.99
    alike = probability_best([a, ArmMoments(2000, 1.00, 0.5)], higher_is_better=True)
    assert abs(alike[0] - 0.5) < 0.02
