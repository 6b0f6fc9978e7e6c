"""Price: a span without its own cost is priced from its tokens and a model price table.

Built-in prices come from prices.json (read on the date it states); a project's own prices
(POST /api/v1/models) come first. Patterns match the whole model name, case-insensitively; of
the prices whose pattern matches and whose start is not after the span, the newest wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).resolve().parent / "prices.json"
PER_MILLION = 1_000_000.0


@dataclass(frozen=True)
class ModelPrice:
    model_name: str
    match_pattern: str
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None
    valid_from_ns: int
    source: str  # "builtin" or "project"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", compile_pattern(self.match_pattern))

    def matches(self, model: str) -> bool:
        return self._regex.fullmatch(model) is not None  # type: ignore[attr-defined]

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int) -> float:
        """USD for this usage; cached tokens are part of the input, billed at the cached price when one exists."""
        return self.costs(input_tokens, output_tokens, cached_input_tokens)[0]

    def costs(self, input_tokens: int, output_tokens: int, cached_input_tokens: int) -> tuple[float, float, float]:
        """(total, input, output) USD for this usage, each rounded as _canonical.c rounds it."""
        cached = min(cached_input_tokens, input_tokens)
        cached_price = (
            self.input_per_million if self.cached_input_per_million is None else self.cached_input_per_million
        )
        uncached_cost = (input_tokens - cached) * self.input_per_million
        cached_cost = cached * cached_price
        output_cost = output_tokens * self.output_per_million
        inputs = uncached_cost + cached_cost
        return (inputs + output_cost) / PER_MILLION, inputs / PER_MILLION, output_cost / PER_MILLION


def compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"match_pattern {pattern!r} is not a regular expression: {exc}") from None


class PriceTable:
    """Prices, newest first, with the candidates for each model name remembered."""

    def __init__(self, prices: Iterable[ModelPrice]) -> None:
        self.prices = sorted(prices, key=lambda p: p.valid_from_ns, reverse=True)
        self._by_model: dict[str, tuple[ModelPrice, ...]] = {}

    def find(self, model: str, at_ns: int) -> ModelPrice | None:
        for price in self.candidates(model):
            if price.valid_from_ns <= at_ns:
                return price
        return None

    def candidates(self, model: str) -> tuple[ModelPrice, ...]:
        """The prices whose pattern matches the model, newest first."""
        candidates = self._by_model.get(model)
        if candidates is None:
            candidates = tuple(p for p in self.prices if p.matches(model))
            if len(self._by_model) > 10_000:
                self._by_model.clear()
            self._by_model[model] = candidates
        return candidates


def date_ns(value: str) -> int:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000_000)


def load_builtin(path: Path = PRICES_FILE) -> PriceTable:
    document = json.loads(path.read_text())
    return PriceTable(
        ModelPrice(
            model_name=row["model_name"],
            match_pattern=row["match_pattern"],
            input_per_million=float(row["input"]),
            output_per_million=float(row["output"]),
            cached_input_per_million=None if row.get("cached_input") is None else float(row["cached_input"]),
            valid_from_ns=date_ns(row["valid_from"]),
            source="builtin",
        )
        for row in document["models"]
    )


BUILTIN = load_builtin()


def price_spans(spans: Iterable[MutableMapping[str, Any]], tables: Sequence[PriceTable]) -> int:
    """Set `cost`, `input_cost` and `output_cost` on spans (canonical fields) that carry no cost but have
    a model and token usage; the first table with a price wins (a project's own before the built-in).
    Returns how many were priced."""
    priced = 0
    for span in spans:
        model = span.get("model")
        if not model or span.get("cost") is not None:
            continue
        input_tokens, output_tokens = span.get("input_tokens"), span.get("output_tokens")
        if input_tokens is None and output_tokens is None:
            continue
        for table in tables:
            price = table.find(model, span.get("start_time_unix_nano") or 0)
            if price is not None:
                total, inputs, outputs = price.costs(
                    input_tokens or 0, output_tokens or 0, span.get("cached_input_tokens") or 0
                )
                span["cost"] = total
                span.setdefault("input_cost", inputs)
                span.setdefault("output_cost", outputs)
                priced += 1
                break
    return priced
