"""Pricing: a span's own cost wins; otherwise tokens × the newest applicable price, a project's first."""

from __future__ import annotations

import math
from typing import Any

from services.ingest.pricing import BUILTIN, ModelPrice, PriceTable, date_ns, load_builtin, price_spans

NOW = date_ns("2025-09-01")


def span(model: str, cost: float | None = None, at: int = NOW, **tokens: int) -> dict[str, Any]:
    """A span's canonical fields as normalise gives them (absent fields are left out)."""
    fields: dict[str, Any] = {"model": model, "start_time_unix_nano": at, **tokens}
    if cost is not None:
        fields["cost"] = cost
    return fields


def test_builtin_prices_say_when_they_were_read() -> None:
    import json

    from services.ingest.pricing import PRICES_FILE

    document = json.loads(PRICES_FILE.read_text())
    assert document["read_on"] and len(load_builtin().prices) == len(document["models"]) > 20


def test_cost_is_tokens_times_price() -> None:
    s = span("gpt-4o", input_tokens=1_000_000, output_tokens=100_000)
    assert price_spans([s], [BUILTIN]) == 1
    assert math.isclose(s["cost"], 2.50 + 1.0)


def test_cached_input_tokens_are_billed_at_the_cached_price() -> None:
    s = span("gpt-4o-mini", input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=0)
    price_spans([s], [BUILTIN])
    assert math.isclose(s["cost"], 0.6 * 0.15 + 0.4 * 0.075)


def test_a_spans_own_cost_wins() -> None:
    s = span("gpt-4o", cost=0.01, input_tokens=1000)
    assert price_spans([s], [BUILTIN]) == 0 and s["cost"] == 0.01


def test_the_pattern_must_match_the_whole_name() -> None:
    assert BUILTIN.find("gpt-4o-mini-2024-07-18", NOW).model_name == "gpt-4o-mini"  # type: ignore[union-attr]
    assert BUILTIN.find("gpt-4o-2024-08-06", NOW).model_name == "gpt-4o"  # type: ignore[union-attr]
    assert BUILTIN.find("my-gpt-4o-finetune", NOW) is None


def test_the_newest_price_that_applies_wins() -> None:
    before_cut = date_ns("2025-05-01")
    assert BUILTIN.find("o3", before_cut).input_per_million == 10.0  # type: ignore[union-attr]
    assert BUILTIN.find("o3", NOW).input_per_million == 2.0  # type: ignore[union-attr]


def test_a_projects_price_comes_before_the_builtin_one() -> None:
    own = PriceTable([ModelPrice("gpt-4o", "gpt-4o", 1.0, 1.0, None, date_ns("2025-01-01"), "project")])
    s = span("gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000)
    price_spans([s], [own, BUILTIN])
    assert math.isclose(s["cost"], 2.0)


def test_unknown_models_and_spans_without_usage_stay_unpriced() -> None:
    spans = [span("mystery-model", input_tokens=5), span("gpt-4o")]
    assert price_spans(spans, [BUILTIN]) == 0
    assert not any("cost" in s for s in spans)
