"""Scores: `POST /api/v1/scores` (one or a batch), checked against the project's score configs and
published to the scores stream; `POST/GET /api/v1/score-configs` to declare what a score must be."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response, get, post
from litestar.types import ControllerRouterHandler
from vane.v1.bus_pb2 import Score, ScoreDataType, ScoreSource

from services.common.bus import Bus
from services.common.errors import Invalid
from services.ingest.publish import encode_scores, message_limit, publish_all, request_digest

DataType = Literal["numeric", "boolean", "categorical"]
_DATA_TYPES: dict[str, int] = {
    "numeric": ScoreDataType.SCORE_DATA_TYPE_NUMERIC,
    "boolean": ScoreDataType.SCORE_DATA_TYPE_BOOLEAN,
    "categorical": ScoreDataType.SCORE_DATA_TYPE_CATEGORICAL,
}
_SOURCES: dict[str, int] = {
    "api": ScoreSource.SCORE_SOURCE_API,
    "annotation": ScoreSource.SCORE_SOURCE_ANNOTATION,
    "eval": ScoreSource.SCORE_SOURCE_EVAL,
}
_CONFIG_CACHE_SECONDS = 5.0
_BOOLEANS: dict[Any, bool] = {True: True, False: False, "true": True, "false": False}  # 1 and 0 hash as True/False


class ScoreIn(msgspec.Struct):
    trace_id: str
    name: str
    value: bool | int | float | str
    span_id: str | None = None
    data_type: DataType | None = None
    source: Literal["api", "annotation", "eval"] = "api"
    comment: str | None = None
    id: str | None = None  # the score's id: given, a retried score is stored once


class ScoreConfigIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    data_type: DataType
    min_value: float | None = None
    max_value: float | None = None
    categories: list[str] = msgspec.field(default_factory=list)
    description: str = ""
    # Which way is better when versions are compared and ranked (toxicity: "lower").
    direction: Literal["higher", "lower"] = "higher"


@dataclass(frozen=True)
class ScoreConfig:
    name: str
    data_type: str
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] = ()


_decoder = msgspec.json.Decoder(ScoreIn | list[ScoreIn])


def parse_scores(body: bytes) -> list[ScoreIn]:
    if not body:
        raise Invalid("the request body is empty: send a score object or a list of them")
    try:
        parsed = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise Invalid(f"not a score or a list of scores: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    return parsed if isinstance(parsed, list) else [parsed]


def _hex_id(value: str, length: int, what: str) -> bytes:
    raw = value.strip().lower().replace("-", "")
    if len(raw) != length * 2:
        raise ValueError(f"{what} must be {length * 2} hex characters, got {value!r}")
    out = bytes.fromhex(raw)
    if out == bytes(length):
        raise ValueError(f"{what} must not be all zero")
    return out


def _typed_value(item: ScoreIn, data_type: str, config: ScoreConfig | None) -> tuple[float, str]:
    value = item.value
    if data_type == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"a numeric score needs a finite number, got {value!r}")
        if config is not None and config.min_value is not None and value < config.min_value:
            raise ValueError(f"{value} is below the minimum {config.min_value} of score {config.name!r}")
        if config is not None and config.max_value is not None and value > config.max_value:
            raise ValueError(f"{value} is above the maximum {config.max_value} of score {config.name!r}")
        return float(value), ""
    if data_type == "boolean":
        truth = _BOOLEANS.get(value.lower() if isinstance(value, str) else value)
        if truth is None:
            raise ValueError(f"a boolean score needs true/false or 1/0, got {value!r}")
        return (1.0 if truth else 0.0), ("true" if truth else "false")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a categorical score needs a string, got {value!r}")
    label = value if isinstance(value, str) else str(value)
    if config is not None and config.categories and label not in config.categories:
        raise ValueError(f"{label!r} is not one of the categories {list(config.categories)} of score {config.name!r}")
    return (float(value) if not isinstance(value, str) else 0.0), label


def to_scores(
    items: Sequence[ScoreIn], project_id: str, configs: Mapping[str, ScoreConfig], now_ns: int
) -> list[Score]:
    """Checked Score records; Invalid lists every refused item with its reason."""
    out: list[Score] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            if not item.name.strip():
                raise ValueError("name must not be empty")
            config = configs.get(item.name)
            data_type = item.data_type or (config.data_type if config else None) or _infer(item.value)
            if config is not None and data_type != config.data_type:
                raise ValueError(f"score {item.name!r} is configured as {config.data_type}, got {data_type}")
            value, label = _typed_value(item, data_type, config)
            out.append(
                Score(
                    project_id=project_id,
                    score_id=item.id or str(uuid.uuid4()),
                    trace_id=_hex_id(item.trace_id, 16, "trace_id"),
                    span_id=_hex_id(item.span_id, 8, "span_id") if item.span_id else b"",
                    name=item.name,
                    value=value,
                    string_value=label,
                    data_type=_DATA_TYPES[data_type],  # type: ignore[arg-type]
                    source=_SOURCES[item.source],  # type: ignore[arg-type]
                    comment=item.comment or "",
                    created_unix_nano=now_ns,
                )
            )
        except ValueError as exc:
            problems.append({"index": index, "error": str(exc)})
    if problems:
        raise Invalid(f"{len(problems)} of {len(items)} scores were refused; none was stored", details=problems)
    return out


def _infer(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "categorical" if isinstance(value, str) else "numeric"


class ScoreConfigStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[uuid.UUID, tuple[float, dict[str, ScoreConfig]]] = {}

    async def configs(self, project_id: uuid.UUID) -> dict[str, ScoreConfig]:
        cached = self._cache.get(project_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = await self._pool.fetch("SELECT * FROM score_configs WHERE project_id = $1", project_id)
        configs = {row["name"]: _config(row) for row in rows}
        self._cache[project_id] = (now + _CONFIG_CACHE_SECONDS, configs)
        return configs

    async def put(self, project_id: uuid.UUID, body: ScoreConfigIn) -> dict[str, Any]:
        if not body.name.strip():
            raise Invalid("name must not be empty")
        if body.data_type != "numeric" and (body.min_value is not None or body.max_value is not None):
            raise Invalid("min_value and max_value apply to numeric scores only")
        if body.data_type != "categorical" and body.categories:
            raise Invalid("categories apply to categorical scores only")
        if body.min_value is not None and body.max_value is not None and body.min_value > body.max_value:
            raise Invalid("min_value is above max_value")
        row = await self._pool.fetchrow(
            """INSERT INTO score_configs
                   (project_id, name, data_type, min_value, max_value, categories, description, direction)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (project_id, name) DO UPDATE SET data_type = $3, min_value = $4, max_value = $5,
                   categories = $6, description = $7, direction = $8, updated_at = now()
               RETURNING *""",
            project_id,
            body.name,
            body.data_type,
            body.min_value,
            body.max_value,
            body.categories,
            body.description,
            body.direction,
        )
        assert row is not None
        self._cache.pop(project_id, None)
        return _config_body(row)

    async def list(self, project_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch("SELECT * FROM score_configs WHERE project_id = $1 ORDER BY name", project_id)
        return [_config_body(row) for row in rows]


def _config(row: asyncpg.Record) -> ScoreConfig:
    return ScoreConfig(row["name"], row["data_type"], row["min_value"], row["max_value"], tuple(row["categories"]))


def _config_body(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "name": row["name"],
        "data_type": row["data_type"],
        "min_value": row["min_value"],
        "max_value": row["max_value"],
        "categories": list(row["categories"]),
        "description": row["description"],
        "direction": row["direction"],
        "updated_at": row["updated_at"].isoformat(),
    }


def score_routes(bus: Bus, store: ScoreConfigStore, publish_timeout: float) -> list[ControllerRouterHandler]:
    @post("/api/v1/scores", status_code=202)
    async def create_scores(project_id: uuid.UUID, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """One score or a list: checked, then durable on the scores stream before 202 is answered."""
        body = await request.body()
        scores = to_scores(parse_scores(body), str(project_id), await store.configs(project_id), time.time_ns())
        chunks = encode_scores(scores, message_limit(bus))
        await publish_all(
            bus, bus.topology.scores_subject, chunks, request_digest(str(project_id), body), publish_timeout
        )
        return Response({"accepted": len(scores), "ids": [s.score_id for s in scores]}, status_code=202)

    @post("/api/v1/score-configs", status_code=201)
    async def put_score_config(project_id: uuid.UUID, data: ScoreConfigIn) -> dict[str, Any]:
        """Declare (or replace) what a score of this name must be."""
        return await store.put(project_id, data)

    @get("/api/v1/score-configs")
    async def list_score_configs(project_id: uuid.UUID) -> dict[str, Any]:
        return {"score_configs": await store.list(project_id)}

    return [create_scores, put_score_config, list_score_configs]
