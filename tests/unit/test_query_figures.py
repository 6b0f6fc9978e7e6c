"""A time series point made of a few fields answers what the whole ROW answers for them."""

from __future__ import annotations

from decimal import Decimal

from services.aggregator import rollup
from services.aggregator.query import FIGURES, Counters, metrics_row, point_figures
from services.aggregator.timeseries import POINT_FIELDS
from services.aggregator.version_merge import QUANTILES, Summary


def _summary(count: int, low: float, high: float) -> Summary:
    return Summary(count, (low + high) / 2 * count, low, high, {q: low + q * (high - low) for q in QUANTILES})


CASES = [
    (Counters(), {}, {}),  # no generations: nulls and zeros
    (
        Counters(7, 2, 700, 1400, Decimal("0.0123456789012"), Decimal("0.004"), Decimal("0.0083456789012"), 1, 2),
        {
            rollup.LATENCY: _summary(7, 120.5, 980.25),
            rollup.TTFT: _summary(7, 20.0, 90.0),
            rollup.INPUT_TOKENS: _summary(7, 90.0, 110.4),
            rollup.OUTPUT_TOKENS: _summary(7, 180.0, 220.6),
            rollup.TOTAL_TOKENS: _summary(7, 270.0, 331.0),
            rollup.COST: _summary(7, 0.001, 0.003),
            rollup.ALL_SCORES: _summary(5, 1.0, 5.0),
            rollup.score_metric("helpfulness"): _summary(5, 1.0, 5.0),
        },
        {"helpfulness": 1, "toxicity": 2},  # a score that only failed
    ),
]


def test_every_field_made_alone_is_the_rows() -> None:
    assert tuple(FIGURES) == POINT_FIELDS
    for cell, summaries, errors in CASES:
        row = metrics_row(cell, summaries, errors)
        assert set(row) == set(FIGURES)
        for field, make in FIGURES.items():
            assert make(cell, summaries, errors) == row[field], field
        few = ("total_cost", "generation_count", "p95_latency_ms")
        assert list(point_figures(cell, summaries, errors, few).items()) == [(f, row[f]) for f in few]
        assert list(point_figures(cell, summaries, errors, POINT_FIELDS).items()) == list(row.items())
