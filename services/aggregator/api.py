"""The query API: metrics and time series by prompt version and app version, runs, traces and waiting
scores. Bodies are built as plain data and sent encoded once; `bodies` declares their types."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Response, get
from litestar.params import Parameter

from services.aggregator import bodies, query, timeseries, trace_list, traces
from services.aggregator.bodies import json_response
from services.aggregator.query import Filters
from services.aggregator.traces import RunFilters

From = Annotated[datetime | None, Parameter(query="from", description="ISO 8601, inclusive (to the minute)")]
To = Annotated[datetime | None, Parameter(query="to", description="ISO 8601, exclusive (to the minute)")]
Model = Annotated[str | None, Parameter(description="only generations of this model")]
Label = Annotated[str | None, Parameter(description="only prompt versions that hold this label now")]
ProjectName = Annotated[
    str | None, Parameter(description="only this app's versions (the resource's project_name, or service name)")
]
Interval = Annotated[
    bodies.Interval | None,
    Parameter(description="minute, 5m, 15m, hour, 6h or day; the finest giving at most 300 points when absent"),
]
Metrics = Annotated[str | None, Parameter(description="comma list of ROW field names each point holds (default all)")]


class MetricsController(Controller):
    path = "/api/v1"
    tags = ["metrics"]

    @get("/prompts/{name:str}/metrics")
    async def prompt_metrics(
        self, pool: asyncpg.Pool, project_id: uuid.UUID, name: str, start: From, end: To, model: Model, label: Label
    ) -> Response[bodies.PromptMetrics]:
        """Metrics of each version of the prompt: counts, totals, medians and percentiles, scores, label moves."""
        return json_response(await query.prompt_metrics(pool, project_id, name, Filters(start, end, model, label)))

    @get("/versions/metrics")
    async def version_metrics(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        start: From,
        end: To,
        model: Model,
        label: Label,
        project_name: ProjectName = None,
    ) -> Response[bodies.VersionMetrics]:
        """The same metrics by app version (the resource's project_name and project_version_name)."""
        filters = Filters(start, end, model, label, project_name)
        return json_response(await query.version_metrics(pool, project_id, filters))

    @get("/prompts/{name:str}/timeseries")
    async def prompt_timeseries(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        name: str,
        start: From,
        end: To,
        model: Model,
        label: Label,
        interval: Interval = None,
        metrics: Metrics = None,
    ) -> Response[bodies.PromptSeries]:
        """Each version's metrics per interval, and the label moves in the range as markers."""
        filters = Filters(start, end, model, label)
        return json_response(await timeseries.prompt_series(pool, project_id, name, filters, interval, metrics))

    @get("/versions/timeseries")
    async def version_timeseries(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        start: From,
        end: To,
        model: Model,
        label: Label,
        project_name: ProjectName = None,
        interval: Interval = None,
        metrics: Metrics = None,
    ) -> Response[bodies.VersionSeries]:
        """Each app version's metrics per interval, and each app version's first run as a marker."""
        filters = Filters(start, end, model, label, project_name)
        return json_response(await timeseries.version_series(pool, project_id, filters, interval, metrics))


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

    @get("/traces")
    async def list_traces(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        start: From,
        end: To,
        app_version: str | None = None,
        project_name: ProjectName = None,
        status: Annotated[str | None, Parameter(description="ok or error (any span erred)")] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Runs (traces), newest first, with their latency, cost, tokens, status, span count and scores."""
        filters = trace_list.TraceFilters(app_version, project_name, status, start, end)
        return await trace_list.list_traces(pool, project_id, filters, limit, cursor)

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
