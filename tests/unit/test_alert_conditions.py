"""Conditions over windows: thresholds, change with its test, and the robust anomaly score."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np

from services.aggregator import rollup
from services.aggregator.version_merge import summarise_blobs
from services.alert import conditions, rules
from services.alert.readings import Window


def _rule(**changes: Any) -> rules.Rule:
    body: dict[str, Any] = {"name": "r", "metric": "latency_ms", "condition": {"op": "above", "threshold": 10}}
    body.update(changes)
    return rules.parse(json.dumps(body).encode())


def _window(latencies: np.ndarray, errors: int = 0) -> Window:
    """A window holding these latencies, its sketches made and merged as the aggregator does."""
    cell = rollup.Cell(generations=len(latencies), errors=errors)
    cell.sketches[rollup.LATENCY] = rollup.Sketch.of(np.asarray(latencies, dtype=np.float64))
    blob = rollup.to_blob(cell)
    summaries = summarise_blobs([[blob]]).summaries[0] if len(latencies) else {}
    return Window(count=len(latencies), errors=errors, cost=Decimal(0), summaries=summaries, blobs=[blob])


def test_threshold_with_a_warning_level_and_min_samples() -> None:
    rule = _rule(statistic="p95", condition={"op": "above", "threshold": 900}, warning=500, min_samples=50)
    rng = np.random.default_rng(1)
    assert conditions.threshold(rule, _window(rng.uniform(0, 400, 200))).level == "none"
    assert conditions.threshold(rule, _window(rng.uniform(0, 700, 200))).level == "warning"
    assert conditions.threshold(rule, _window(rng.uniform(0, 1200, 200))).level == "alert"
    assert conditions.threshold(rule, _window(rng.uniform(0, 1200, 20))).level == "no_data"


def test_error_rate_below_and_above() -> None:
    rule = _rule(metric="error_rate", condition={"op": "above", "threshold": 0.05})
    assert conditions.threshold(rule, _window(np.ones(100), errors=10)).level == "alert"
    assert conditions.threshold(rule, _window(np.ones(100), errors=1)).level == "none"


def test_change_needs_both_the_size_and_significance() -> None:
    rule = _rule(condition={"op": "change", "pct": 20, "baseline_window": "1h"}, min_samples=20)
    rng = np.random.default_rng(2)
    base = _window(rng.lognormal(6, 0.3, 2000))
    assert conditions.change(rule, _window(rng.lognormal(6, 0.3, 2000)), base).level == "none"
    risen = conditions.change(rule, _window(rng.lognormal(6.4, 0.3, 2000)), base)
    assert risen.level == "alert" and risen.details["test"] == "mann_whitney_u" and risen.details["p_value"] < 1e-6
    # a 50% rise in the median of five values is not significant: it does not fire
    tiny = _rule(condition={"op": "change", "pct": 20, "baseline_window": "1h"}, min_samples=1)
    assert (
        conditions.change(tiny, _window(np.array([1.0, 9, 3, 15, 6])), _window(np.array([2.0, 8, 4, 10, 5]))).level
        == "none"
    )


def test_robust_z_ignores_a_daily_level_and_flags_a_spike() -> None:
    same_hour_each_day = [300.0, 310, 295, 305, 290, 315, 300]
    assert abs(conditions.robust_z(312, same_hour_each_day)[0]) < 3.5
    assert conditions.robust_z(900, same_hour_each_day)[0] > 3.5
    assert conditions.robust_z(40, same_hour_each_day)[0] < -3.5
    assert conditions.robust_z(5, [5.0, 5, 5]) == (0.0, 5.0)
