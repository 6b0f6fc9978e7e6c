"""The deciding statistics, proven the way a statistician would: against SciPy on the same data, and by
seeded simulation (false-positive rates of A/A comparisons, power at a known effect, interval coverage)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from services.aggregator.arms import binned
from services.aggregator.sketches import Sketch
from services.aggregator.winner import normalise, normalised_weights
from services.common.errors import Invalid
from services.common.statistics import BinnedSample, compare_proportions, compare_quantile, holm, mann_whitney_u
from services.common.statistics.proportions import compare_distributions, proportion_samples_needed
from services.common.statistics.rank import rank_samples_needed
from services.common.statistics.verdicts import Arm, Comparison, decide

TRIALS = 200


def sketched(values: np.ndarray, exact: bool = False) -> BinnedSample:
    """Values as the rollups keep them: a sketch's bins (or exact table), as compare reads them."""
    return binned(Sketch.of(values, exact=exact))


@pytest.mark.parametrize("shift", [1.0, 1.02, 1.05, 1.2])
def test_mann_whitney_on_bins_agrees_with_scipy_on_raw_values(shift: float) -> None:
    rng = np.random.default_rng(11)
    a, b = rng.lognormal(6, 0.8, 3000), rng.lognormal(6, 0.8, 3000) * shift
    ours = mann_whitney_u(sketched(a), sketched(b))
    scipy = stats.mannwhitneyu(b, a, method="asymptotic")
    assert ours.p_value == pytest.approx(scipy.pvalue, rel=0.1, abs=1e-3)
    assert ours.superiority == pytest.approx(scipy.statistic / (a.size * b.size), abs=2e-3)


def test_mann_whitney_on_exact_ties_is_scipys() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 6, 800).astype(float), rng.integers(1, 6, 900).astype(float)
    ours = mann_whitney_u(BinnedSample.of_values(a), BinnedSample.of_values(b))
    assert ours.p_value == pytest.approx(stats.mannwhitneyu(b, a, method="asymptotic").pvalue, rel=1e-9)


def _family(rng: np.random.Generator, n: int, latency_shift: float = 1.0) -> list[Comparison]:
    """The comparisons a version pair gets: latency median and p95, tokens, error rate, a boolean score."""
    lat_a, lat_b = rng.lognormal(6.5, 0.8, n), rng.lognormal(6.5, 0.8, n) * latency_shift
    tok_a, tok_b = (
        (rng.lognormal(5, 0.6, n).astype(int) + 1).astype(float),
        (rng.lognormal(5, 0.6, n).astype(int) + 1).astype(float),
    )
    err_a, err_b = int(rng.binomial(n, 0.03)), int(rng.binomial(n, 0.03))
    up_a, up_b = int(rng.binomial(n, 0.7)), int(rng.binomial(n, 0.7))
    return [
        Comparison("latency_ms", "median", "lower", Arm(sketched(lat_a)), Arm(sketched(lat_b))),
        Comparison("latency_ms", "p95", "lower", Arm(sketched(lat_a)), Arm(sketched(lat_b))),
        Comparison("output_tokens", "median", "lower", Arm(sketched(tok_a)), Arm(sketched(tok_b))),
        Comparison("error_rate", "rate", "lower", Arm(successes=err_a, trials=n), Arm(successes=err_b, trials=n)),
        Comparison("score:thumbs", "rate", "higher", Arm(successes=up_a, trials=n), Arm(successes=up_b, trials=n)),
    ]


def test_a_a_comparisons_give_a_verdict_in_at_most_five_percent_of_trials() -> None:
    rng = np.random.default_rng(2026)
    with_verdict = 0
    for _ in range(TRIALS):
        found = decide(_family(rng, 2000))
        with_verdict += any(c.verdict in ("b_better", "b_worse") for c in found)
    assert with_verdict / TRIALS <= 0.05


def test_a_ten_percent_latency_shift_at_five_thousand_runs_is_found() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        found = {(c.metric, c.statistic): c for c in decide(_family(rng, 5000, latency_shift=1.1))}
        assert found["latency_ms", "median"].verdict == "b_worse"
        assert found["latency_ms", "median"].test == "mann_whitney_u"
        assert found["latency_ms", "median"].difference > 0


def test_median_difference_interval_covers_the_truth_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(17)
    true_difference = np.exp(6.0) * 0.08  # medians of lognormal(6, σ) and 1.08 times it
    covered = 0
    for _ in range(TRIALS):
        a, b = rng.lognormal(6.0, 0.7, 800), rng.lognormal(6.0, 0.7, 800) * 1.08
        low, high = compare_quantile(sketched(a), sketched(b), 0.5).ci95
        covered += low <= true_difference <= high
    assert 0.92 <= covered / TRIALS <= 0.99


def test_p95_bootstrap_false_positive_rate_is_nominal() -> None:
    rng = np.random.default_rng(23)
    rejected = sum(
        compare_quantile(sketched(rng.lognormal(6, 0.8, 1000)), sketched(rng.lognormal(6, 0.8, 1000)), 0.95).p_value
        < 0.05
        for _ in range(TRIALS)
    )
    assert rejected / TRIALS <= 0.07


@pytest.mark.parametrize(("x_a", "n_a", "x_b", "n_b"), [(60, 2000, 95, 2000), (3, 40, 9, 41), (500, 1000, 480, 1000)])
def test_proportion_tests_are_scipys_on_the_same_counts(x_a: int, n_a: int, x_b: int, n_b: int) -> None:
    ours = compare_proportions(x_a, n_a, x_b, n_b)
    table = [[x_a, n_a - x_a], [x_b, n_b - x_b]]
    if ours.test == "fisher_exact":
        assert ours.p_value == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-12)
    else:  # the pooled z test is Pearson's chi-square on the 2×2 table, without continuity correction
        assert ours.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9)
    assert ours.ci95[0] < ours.difference < ours.ci95[1]


def test_newcombe_interval_covers_the_difference_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(29)
    covered = 0
    for _ in range(TRIALS):
        low, high = compare_proportions(int(rng.binomial(300, 0.1)), 300, int(rng.binomial(300, 0.15)), 300).ci95
        covered += low <= 0.05 <= high
    assert 0.92 <= covered / TRIALS <= 0.99


def test_error_rate_rise_is_b_worse_and_names_the_z_test() -> None:
    found = decide(
        [Comparison("error_rate", "rate", "lower", Arm(successes=40, trials=2000), Arm(successes=120, trials=2000))]
    )
    assert found[0].verdict == "b_worse" and found[0].test == "two_proportion_z"


def test_lower_is_better_score_falling_is_b_better() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.4, 0.1, 1000), rng.normal(0.3, 0.1, 1000)
    found = decide([Comparison("score:toxicity", "median", "lower", Arm(sketched(a)), Arm(sketched(b)))])
    assert found[0].verdict == "b_better"


def test_small_arms_are_not_enough_data_with_samples_needed() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(6, 0.8, 20), rng.lognormal(6, 0.8, 20) * 1.1
    found = decide([Comparison("latency_ms", "median", "lower", Arm(sketched(a)), Arm(sketched(b)))])
    assert found[0].verdict == "not_enough_data"
    assert found[0].samples_needed and found[0].samples_needed > 20


def test_a_large_flat_comparison_is_no_difference() -> None:
    # (seed 4 is one of the 5% an A/A test flags: SciPy's own p on the raw values is 0.046 there)
    rng = np.random.default_rng(5)
    a, b = rng.lognormal(6, 0.5, 20_000), rng.lognormal(6, 0.5, 20_000)
    found = decide([Comparison("latency_ms", "median", "lower", Arm(sketched(a)), Arm(sketched(b)))])
    assert found[0].verdict == "no_difference" and found[0].samples_needed is None


def test_samples_needed_formulas_match_their_textbook_values() -> None:
    # Fleiss: 10% vs 15% at α 0.05 and 80% power needs 686 per arm
    assert proportion_samples_needed(0.10, 0.15, 0.05) == 686
    # Noether: P(B > A) = 0.6 → (1.96 + 0.8416)² / (6 · 0.01) = 131 per arm
    assert rank_samples_needed(0.6, 0.05) == 131


def test_chi_square_of_two_category_distributions_is_scipys() -> None:
    a, b = {"good": 50, "bad": 30, "ugly": 20}, {"good": 30, "bad": 40, "ugly": 30}
    p, distance = compare_distributions(a, b)
    assert p == pytest.approx(stats.chi2_contingency([[30, 50, 20], [40, 30, 30]], correction=False).pvalue)
    assert distance == pytest.approx(0.2)


def test_holm_adjusts_as_the_paper_does() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_winner_normalisation_is_direction_aware() -> None:
    # cost: lower wins; min-max puts the cheapest at 1 and the dearest at 0
    assert normalise([0.002, 0.001, 0.004], "lower", "min_max") == pytest.approx([2 / 3, 1.0, 0.0])
    assert normalise([3.0, 4.5, None], "higher", "min_max") == pytest.approx([0.0, 1.0, 0.0])
    assert normalise([10.0, 30.0, 20.0, 20.0], "lower", "rank") == pytest.approx([1.0, 0.0, 0.5, 0.5])
    assert normalise([5.0, 5.0], "lower", "min_max") == [1.0, 1.0]


def test_winner_weights_are_checked_and_normalised() -> None:
    assert normalised_weights({"latency_ms": 1, "cost": 3, "score:x": 0}) == {"latency_ms": 0.25, "cost": 0.75}
    with pytest.raises(Invalid, match=r"weights\.speed"):
        normalised_weights({"speed": 1})
    with pytest.raises(Invalid, match=r"weights\.cost"):
        normalised_weights({"cost": -1})
    with pytest.raises(Invalid, match="above 0"):
        normalised_weights({"cost": 0})
