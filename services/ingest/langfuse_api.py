"""Langfuse's public score and project routes, in Langfuse's own shapes, answered by ingest:

- `POST /api/public/scores` (Langfuse's REST API) → `{"id"}`;
- `POST /api/public/ingestion`, where Langfuse's SDK batches `create_score` as `score-create` events
  → 207 `{"successes", "errors"}` per event (traces come over OTLP, `/api/public/otel/v1/traces`);
- `GET /api/public/projects`, which the SDK's `auth_check()` reads.

A Langfuse score becomes a Vane score: `traceId`, `observationId` (the span), `name`, `value`,
`dataType` (NUMERIC, BOOLEAN, CATEGORICAL), `comment`, `id`; it goes the same way as `/api/v1/scores`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.types import ControllerRouterHandler
from vane.v1.bus_pb2 import Score

from services.common.bus import Bus
from services.common.errors import Invalid
from services.ingest.publish import encode_scores, message_limit, publish_all, request_digest
from services.ingest.scores import ScoreConfigStore, ScoreIn, to_scores

# Langfuse's TEXT scores are free text: the nearest Vane type is a category of their own.
_DATA_TYPES: dict[str, Literal["numeric", "boolean", "categorical"]] = {
    "NUMERIC": "numeric",
    "BOOLEAN": "boolean",
    "CATEGORICAL": "categorical",
    "TEXT": "categorical",
}
_SCORE_EVENT = "score-create"


class LangfuseScore(msgspec.Struct, rename="camel"):
    """Langfuse's `CreateScoreRequest` / ingestion `ScoreBody`."""

    name: str
    value: float | str
    trace_id: str | None = None
    observation_id: str | None = None
    id: str | None = None
    data_type: str | None = None
    comment: str | None = None
    session_id: str | None = None
    dataset_run_id: str | None = None
    config_id: str | None = None
    environment: str | None = None
    metadata: Any = None


class ScoreCreated(msgspec.Struct):
    id: str


class IngestionEvent(msgspec.Struct):
    id: str
    type: str
    body: dict[str, Any]
    timestamp: str | None = None


class IngestionBatch(msgspec.Struct):
    batch: list[IngestionEvent]
    metadata: Any = None


class EventSuccess(msgspec.Struct):
    id: str
    status: int


class EventError(msgspec.Struct):
    id: str
    status: int
    message: str
    error: str | None = None


class IngestionResult(msgspec.Struct):
    successes: list[EventSuccess]
    errors: list[EventError]


class Organization(msgspec.Struct):
    id: str
    name: str


class LangfuseProject(msgspec.Struct):
    id: str
    name: str
    organization: Organization
    metadata: dict[str, Any]


class Projects(msgspec.Struct):
    data: list[LangfuseProject]


def score_in(score: LangfuseScore) -> ScoreIn:
    """Vane's score for a Langfuse one; Invalid when Vane cannot hold it (no trace, unknown type)."""
    if not score.trace_id:
        raise Invalid("Vane scores traces and their spans: send traceId (and observationId for a span)")
    data_type = None
    if score.data_type is not None:
        data_type = _DATA_TYPES.get(score.data_type.upper())
        if data_type is None:
            raise Invalid(f"dataType must be one of {sorted(_DATA_TYPES)}, got {score.data_type!r}")
    return ScoreIn(
        trace_id=score.trace_id,
        name=score.name,
        value=score.value,
        span_id=score.observation_id,
        data_type=data_type,
        comment=score.comment,
        id=score.id,
    )


def langfuse_routes(bus: Bus, store: ScoreConfigStore, publish_timeout: float) -> list[ControllerRouterHandler]:
    async def publish(project_id: uuid.UUID, scores: list[Score], body: bytes) -> None:
        chunks = encode_scores(scores, message_limit(bus))
        digest = request_digest(str(project_id), body)
        await publish_all(bus, bus.topology.scores_subject, chunks, digest, publish_timeout)

    async def checked(project_id: uuid.UUID, score: LangfuseScore) -> Score:
        configs = await store.configs(project_id)
        return to_scores([score_in(score)], str(project_id), configs, time.time_ns())[0]

    @post("/api/public/scores", status_code=200)
    async def create_score(project_id: uuid.UUID, data: LangfuseScore, request: Request[Any, Any, Any]) -> ScoreCreated:
        """One score, durable on the scores stream before it is answered."""
        score = await checked(project_id, data)
        await publish(project_id, [score], await request.body())
        return ScoreCreated(id=score.score_id)

    @post("/api/public/ingestion", status_code=207)
    async def ingestion(
        project_id: uuid.UUID, data: IngestionBatch, request: Request[Any, Any, Any]
    ) -> Response[IngestionResult]:
        """Langfuse's batch of events: its scores are taken, each event answered on its own."""
        scores: list[Score] = []
        successes: list[EventSuccess] = []
        errors: list[EventError] = []
        for event in data.batch:
            if event.type != _SCORE_EVENT:
                message = f"Vane takes {event.type!r} events as OTLP spans at /api/public/otel/v1/traces"
                errors.append(EventError(event.id, 400, message, "unsupported_event_type"))
                continue
            try:
                body = msgspec.convert(event.body, LangfuseScore)
                scores.append(await checked(project_id, body))
            except msgspec.ValidationError as exc:
                errors.append(EventError(event.id, 400, f"not a Langfuse score: {exc}", "invalid"))
                continue
            except Invalid as exc:
                problems = exc.details if isinstance(exc.details, list) and exc.details else None
                errors.append(EventError(event.id, 400, problems[0]["error"] if problems else exc.message, "invalid"))
                continue
            successes.append(EventSuccess(event.id, 201))
        if scores:
            await publish(project_id, scores, await request.body())
        return Response(IngestionResult(successes, errors), status_code=207)

    @get("/api/public/projects")
    async def projects(project_id: uuid.UUID, request: Request[Any, Any, Any]) -> Projects:
        """The key's own project (Vane has no organisations: the project stands for its own)."""
        pool = request.app.state.resources.pool
        name = await pool.fetchval("SELECT name FROM projects WHERE id = $1", project_id)
        if name is None:
            return Projects(data=[])
        organization = Organization(id=str(project_id), name=name)
        return Projects(data=[LangfuseProject(str(project_id), name, organization, {})])

    return [create_score, ingestion, projects]
