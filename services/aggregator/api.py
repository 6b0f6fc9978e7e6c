"""The query API: metrics by prompt version and app version, runs, traces and waiting scores."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from litestar import Controller, get
from litestar.params import Parameter

from services.aggregator import query, traces
from services.aggregator.query import Filters
from services.aggregator.traces import RunFilters

From = Annotated[datetime | None, Parameter(query="from", description="ISO 8601, inclusive (to the minute)")]
To = Annotated[datetime | None, Parameter(query="to", description="ISO 8601, exclusive (to the minute)")]
Model = Annotated[str | None, Parameter(description="only generations of this model")]
Label = Annotated[str | None, Parameter(description="only prompt versions that hold this label now")]


class MetricsController(Controller):
    path = "/api/v1"
    tags = ["metrics"]

    @get("/prompts/{name:str}/metrics")
    async def prompt_metrics(
        self, pool: asyncpg.Pool, project_id: uuid.UUID, name: str, start: From, end: To, model: Model, label: Label
    ) -> dict[str, Any]:
        """Metrics of each version of the prompt: counts, totals, medians and percentiles, scores."""
        return await query.prompt_metrics(pool, project_id, name, Filters(start, end, model, label))

    @get("/versions/metrics")
    async def version_metrics(
        self, pool: asyncpg.Pool, project_id: uuid.UUID, start: From, end: To, model: Model, label: Label
    ) -> dict[str, Any]:
        """The same metrics by app version (the resource's project_version_name)."""
        return await query.version_metrics(pool, project_id, Filters(start, end, model, label))


class RunController(Controller):
    path = "/api/v1"
    tags = ["runs"]

    @get("/runs")
    async def list_runs(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        start: From,
        end: To,
        model: Model,
        app_version: str | None = None,
        prompt_name: str | None = None,
        prompt_version: int | None = None,
        kind: str | None = None,
        status: Annotated[str | None, Parameter(description="ok, error or unset")] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Stored runs (spans), newest first; pass `next_cursor` back as `cursor` for the next page."""
        filters = RunFilters(app_version, prompt_name, prompt_version, model, kind, status, start, end)
        return await traces.list_runs(pool, project_id, filters, limit, cursor)

    @get("/runs/{trace_id:str}")
    async def trace(self, pool: asyncpg.Pool, project_id: uuid.UUID, trace_id: str) -> dict[str, Any]:
        """The trace's spans with their scores; 404 when this project has no such trace."""
        return await traces.trace_view(pool, project_id, trace_id)

    @get("/scores/pending")
    async def pending_scores(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        older_than_seconds: Annotated[float, Parameter(ge=0)] = 3600.0,
    ) -> dict[str, Any]:
        """Scores still waiting for the span they name (kept, counted as soon as it arrives)."""
        return await traces.pending_scores(pool, project_id, older_than_seconds)
