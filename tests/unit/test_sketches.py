"""The sketch's error bound, its encoding, and that merging is the same as sketching the union."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.sketches import ACCURACY, MAPPING, Sketch, decode, encode, keys_of, merge, values_of

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
quantiles = st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0])


def _within_bound(sketch: Sketch, values: list[float], q: float) -> bool:
    """The answer is within ACCURACY of the exact order statistic at rank q·(n−1) (DDSketch's definition)."""
    ordered = np.sort(np.asarray(values))
    exact = ordered[math.floor(q * (len(values) - 1))]
    got = sketch.quantile(q)
    assert got is not None
    return abs(got - exact) <= ACCURACY * abs(exact) + 1e-12


@given(st.lists(positive, min_size=1, max_size=40))
def test_keys_are_the_ddsketch_librarys_own(values: list[float]) -> None:
    array = np.array(values)
    assert keys_of(array).tolist() == [MAPPING.key(v) for v in values]
    assert np.allclose(values_of(keys_of(array)), [MAPPING.value(MAPPING.key(v)) for v in values], rtol=1e-12)


@given(st.lists(finite, min_size=1, max_size=300), quantiles)
def test_any_quantile_is_within_the_relative_error_of_its_order_statistic(values: list[float], q: float) -> None:
    assert _within_bound(Sketch.of(values), values, q)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.floats(min_value=0.2, max_value=2.5))
def test_median_and_tail_percentiles_of_lognormal_data_are_within_one_percent_of_numpy(seed: int, sigma: float) -> None:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(mean=5.5, sigma=sigma, size=10_000)
    sketch = Sketch.of(values)
    for q in (0.5, 0.95, 0.99):
        got = sketch.quantile(q)
        assert got is not None
        assert abs(got - np.percentile(values, q * 100)) <= 0.01 * np.percentile(values, q * 100)


@given(st.lists(st.lists(finite, max_size=50), min_size=1, max_size=8), quantiles)
def test_merging_sketches_equals_sketching_all_values(parts: list[list[float]], q: float) -> None:
    merged = merge([Sketch.of(p) for p in parts])
    whole = Sketch.of([v for p in parts for v in p])
    assert merged.count == whole.count
    assert merged.zeros == whole.zeros
    assert math.isclose(merged.total, whole.total, rel_tol=1e-9, abs_tol=1e-6)
    assert merged.quantile(q) == whole.quantile(q)


@given(st.lists(finite, max_size=200))
def test_encoding_round_trips(values: list[float]) -> None:
    sketch = Sketch.of(values)
    back = decode(encode(sketch))
    assert back.count == sketch.count
    assert back.quantiles([0.01, 0.5, 0.99]) == sketch.quantiles([0.01, 0.5, 0.99])
    if values:
        assert (back.low, back.high) == (min(values), max(values))


def test_counts_above_a_byte_and_sparse_minutes_stay_small() -> None:
    dense = Sketch.of(np.full(70_000, 120.0))
    assert decode(encode(dense)).count == 70_000
    sparse = Sketch.of([1.0, 1e6])  # two bins far apart: stored as keys, not as a range
    assert len(encode(sparse)[5]) == 5  # type: ignore[arg-type]


def test_empty_sketch_answers_none() -> None:
    assert Sketch.of([]).quantile(0.5) is None
    assert Sketch.of([math.nan, math.inf]).count == 0
