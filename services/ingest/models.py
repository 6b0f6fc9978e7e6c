"""Model prices per project: `POST/GET /api/v1/models`, and the cached table the span path prices with."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar import get, post
from litestar.types import ControllerRouterHandler

from services.common.errors import Invalid
from services.ingest.pricing import BUILTIN, PRICES_FILE, ModelPrice, PriceTable, compile_pattern

_CACHE_SECONDS = 10.0  # a new price reaches every ingest replica within this


class ModelPriceIn(msgspec.Struct, forbid_unknown_fields=True):
    model_name: str
    input_price_per_million: float
    output_price_per_million: float
    match_pattern: str | None = None  # default: the model name exactly
    cached_input_price_per_million: float | None = None
    valid_from: datetime | None = None  # default: now


class PriceStore:
    """A project's own prices from Postgres, cached in the process for a few seconds."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[uuid.UUID, tuple[float, PriceTable]] = {}

    async def table_for(self, project_id: uuid.UUID) -> PriceTable:
        cached = self._cache.get(project_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = await self._pool.fetch("SELECT * FROM model_prices WHERE project_id = $1", project_id)
        table = PriceTable(_price(row) for row in rows)
        self._cache[project_id] = (now + _CACHE_SECONDS, table)
        return table

    async def add(self, project_id: uuid.UUID, body: ModelPriceIn) -> dict[str, Any]:
        pattern = body.match_pattern or re.escape(body.model_name)
        try:
            compile_pattern(pattern)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        prices = (body.input_price_per_million, body.output_price_per_million, body.cached_input_price_per_million)
        if any(p is not None and p < 0 for p in prices):
            raise Invalid("prices must not be negative")
        valid_from = body.valid_from or datetime.now(UTC)
        if valid_from.tzinfo is None:
            valid_from = valid_from.replace(tzinfo=UTC)
        row = await self._pool.fetchrow(
            """INSERT INTO model_prices (id, project_id, model_name, match_pattern, input_price_per_million,
                   output_price_per_million, cached_input_price_per_million, valid_from)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
            uuid.uuid4(),
            project_id,
            body.model_name,
            pattern,
            *prices,
            valid_from,
        )
        assert row is not None
        self._cache.pop(project_id, None)
        return _row_body(row)

    async def list(self, project_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM model_prices WHERE project_id = $1 ORDER BY valid_from DESC, created_at DESC", project_id
        )
        return [_row_body(row) for row in rows]


def _price(row: asyncpg.Record) -> ModelPrice:
    return ModelPrice(
        model_name=row["model_name"],
        match_pattern=row["match_pattern"],
        input_per_million=row["input_price_per_million"],
        output_per_million=row["output_price_per_million"],
        cached_input_per_million=row["cached_input_price_per_million"],
        valid_from_ns=int(row["valid_from"].timestamp() * 1_000_000_000),
        source="project",
    )


def _row_body(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "model_name": row["model_name"],
        "match_pattern": row["match_pattern"],
        "input_price_per_million": row["input_price_per_million"],
        "output_price_per_million": row["output_price_per_million"],
        "cached_input_price_per_million": row["cached_input_price_per_million"],
        "valid_from": row["valid_from"].isoformat(),
        "source": "project",
    }


def _builtin_body(price: ModelPrice, read_on: str) -> dict[str, Any]:
    return {
        "model_name": price.model_name,
        "match_pattern": price.match_pattern,
        "input_price_per_million": price.input_per_million,
        "output_price_per_million": price.output_per_million,
        "cached_input_price_per_million": price.cached_input_per_million,
        "valid_from": datetime.fromtimestamp(price.valid_from_ns / 1e9, UTC).isoformat(),
        "source": "builtin",
        "read_on": read_on,
    }


def model_routes(store: PriceStore) -> list[ControllerRouterHandler]:
    read_on = json.loads(PRICES_FILE.read_text())["read_on"]

    @post("/api/v1/models", status_code=201)
    async def create_model_price(project_id: uuid.UUID, data: ModelPriceIn) -> dict[str, Any]:
        """Add a price for this project; it wins over the built-in table from `valid_from` on."""
        return await store.add(project_id, data)

    @get("/api/v1/models")
    async def list_model_prices(project_id: uuid.UUID) -> dict[str, Any]:
        """This project's prices, then the built-in ones (with the date they were read)."""
        own = await store.list(project_id)
        return {"models": own + [_builtin_body(p, read_on) for p in BUILTIN.prices], "unit": "USD per 1M tokens"}

    return [create_model_price, list_model_prices]
