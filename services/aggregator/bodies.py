"""The query API's response bodies, as types: what /schema/openapi.json documents.

Handlers build plain dicts (a metrics query caches them, a time series makes thousands) and send
them encoded once (`json_response`); these types are the shape those dicts have, which the tests
check every answer against (tests/integration/test_aggregator_schema.py).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Response

_encode = msgspec.json.Encoder().encode


def json_response(body: Any, status_code: int = 200) -> Response[Any]:
    return Response(content=_encode(body), media_type="application/json", status_code=status_code)


class ScoreStats(msgspec.Struct):
    count: int
    median: float | None
    mean: float | None
    min: float | None
    max: float | None
    p05: float | None
    p95: float | None
    error_count: int  # evaluations of this score that failed


class LabelMove(msgspec.Struct):
    at: str
    label: str
    from_version: int | None
    to_version: int | None
    by: str | None  # the public key that moved it


class Figures(msgspec.Struct, kw_only=True):
    """A version's metrics: exact counts and totals, medians and percentiles within 1%."""

    generation_count: int
    error_count: int
    error_rate: float | None
    median_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    mean_latency_ms: float | None
    median_ttft_ms: float | None
    median_input_tokens: int | None
    median_output_tokens: int | None
    median_total_tokens: int | None
    total_input_tokens: int
    total_output_tokens: int
    total_tokens: int
    median_cost: float | None
    mean_cost: float | None
    total_cost: float
    total_input_cost: float
    total_output_cost: float
    median_score: float | None
    scores: dict[str, ScoreStats]
    first_generation_at: str | None
    last_generation_at: str | None


class PromptVersionRow(Figures, kw_only=True):
    version: int
    labels: list[str]
    label_history: list[LabelMove]  # this version's label moves in the range


class AppVersionRow(Figures, kw_only=True):
    """An app version's generations (Figures), and its runs (traces): each run's latency, cost and
    status, over its spans; null with model= or label= (a run has neither)."""

    version: str
    project_name: str
    run_count: int | None
    mean_run_latency_ms: float | None
    median_run_latency_ms: float | None
    p95_run_latency_ms: float | None
    mean_run_cost: float | None
    median_run_cost: float | None
    run_error_rate: float | None


class PromptMetrics(msgspec.Struct):
    prompt: str
    versions: list[PromptVersionRow]


class VersionMetrics(msgspec.Struct):
    versions: list[AppVersionRow]


Interval = Literal["minute", "5m", "15m", "hour", "6h", "day"]


class Point(msgspec.Struct, kw_only=True):
    """One interval of a version: `at` its start, and the ROW fields asked for (`metrics=`; all by default;
    the run fields on app versions' points only)."""

    at: str
    generation_count: int | msgspec.UnsetType = msgspec.UNSET
    error_count: int | msgspec.UnsetType = msgspec.UNSET
    error_rate: float | msgspec.UnsetType | None = msgspec.UNSET
    median_latency_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    p95_latency_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    p99_latency_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    mean_latency_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    median_ttft_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    median_input_tokens: int | msgspec.UnsetType | None = msgspec.UNSET
    median_output_tokens: int | msgspec.UnsetType | None = msgspec.UNSET
    median_total_tokens: int | msgspec.UnsetType | None = msgspec.UNSET
    total_input_tokens: int | msgspec.UnsetType = msgspec.UNSET
    total_output_tokens: int | msgspec.UnsetType = msgspec.UNSET
    total_tokens: int | msgspec.UnsetType = msgspec.UNSET
    median_cost: float | msgspec.UnsetType | None = msgspec.UNSET
    mean_cost: float | msgspec.UnsetType | None = msgspec.UNSET
    total_cost: float | msgspec.UnsetType = msgspec.UNSET
    total_input_cost: float | msgspec.UnsetType = msgspec.UNSET
    total_output_cost: float | msgspec.UnsetType = msgspec.UNSET
    median_score: float | msgspec.UnsetType | None = msgspec.UNSET
    scores: dict[str, ScoreStats] | msgspec.UnsetType = msgspec.UNSET
    first_generation_at: str | msgspec.UnsetType | None = msgspec.UNSET
    last_generation_at: str | msgspec.UnsetType | None = msgspec.UNSET
    run_count: int | msgspec.UnsetType | None = msgspec.UNSET
    mean_run_latency_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    median_run_latency_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    p95_run_latency_ms: float | msgspec.UnsetType | None = msgspec.UNSET
    mean_run_cost: float | msgspec.UnsetType | None = msgspec.UNSET
    median_run_cost: float | msgspec.UnsetType | None = msgspec.UNSET
    run_error_rate: float | msgspec.UnsetType | None = msgspec.UNSET


class Marker(msgspec.Struct, kw_only=True):
    """A deployment: a label move (prompt series) or an app version's first run (app series)."""

    at: str
    label: str | None
    from_version: int | str | None
    to_version: int | str | None
    project_name: str | None = None


class PromptVersionSeries(msgspec.Struct):
    version: int
    points: list[Point]


class AppVersionSeries(msgspec.Struct):
    version: str
    project_name: str
    points: list[Point]


class PromptSeries(msgspec.Struct):
    interval: Interval
    series: list[PromptVersionSeries]
    markers: list[Marker]


class VersionSeries(msgspec.Struct):
    interval: Interval
    series: list[AppVersionSeries]
    markers: list[Marker]
