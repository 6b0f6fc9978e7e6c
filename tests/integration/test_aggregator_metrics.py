"""The aggregator against real NATS, Postgres and its own process: metrics match an exact
computation, scores join their runs whenever they arrive, and one project never sees another's."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from services.common.bus import Bus
from tests.support.aggregator_load import (
    STREAM_MAX_BYTES,
    eventually,
    latency_of,
    make_load,
    publish_scores,
    publish_spans,
)

pytestmark = pytest.mark.slow


def _env(namespace: str) -> dict[str, str]:
    return {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES)}


def _close(got: float | None, exact: float, tolerance: float = 0.01) -> bool:
    return got is not None and abs(got - exact) <= tolerance * abs(exact)


def _iso(ns: int) -> str:
    from services.aggregator.query import iso

    return iso(ns) or ""


async def test_prompt_and_app_version_metrics_match_numpy_over_ten_thousand_runs(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str, pool: Any
) -> None:
    project = await make_project()
    load = make_load(project.id, 10_000)
    aggregator = start_service("aggregator", **_env(namespace))
    await publish_scores(bus, load.scores[: len(load.scores) // 2])  # half of the scores before their spans
    await publish_spans(bus, project.id, load.spans)
    await publish_scores(bus, load.scores[len(load.scores) // 2 :])
    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:

        async def settled() -> dict[str, Any] | None:
            body = (await http.get("/api/v1/prompts/support-reply/metrics")).json()
            rows = body["versions"]
            counted = sum(r["generation_count"] for r in rows)
            scored = sum(r["scores"].get("helpfulness", {}).get("count", 0) for r in rows)
            return body if counted == len(load.spans) and scored == len(load.scores) else None

        body = await eventually(settled, timeout=90)
        score_of = {s.span_id: s.value for s in load.scores}
        for row in body["versions"]:
            spans = load.generations(prompt_version=row["version"])
            _check_row(row, spans, score_of)
        assert [r["version"] for r in body["versions"]] == [2, 1]

        by_app = (await http.get("/api/v1/versions/metrics")).json()["versions"]
        assert [r["version"] for r in by_app] == ["baseline", "concise"]
        for row in by_app:
            _check_row(row, load.generations(app_version=row["version"]), score_of)

        mini = (await http.get("/api/v1/versions/metrics", params={"model": "gpt-4o-mini"})).json()["versions"]
        assert sum(r["generation_count"] for r in mini) == len(load.generations(model="gpt-4o-mini"))

        # a window: exact counts for the generations whose start falls in it (to the minute)
        times = sorted(s.start_time_unix_nano for s in load.spans)
        lo, hi = times[2000] // 60_000_000_000 * 60_000_000_000, times[7000] // 60_000_000_000 * 60_000_000_000
        window = {"from": _iso(lo), "to": _iso(hi)}
        rows = (await http.get("/api/v1/prompts/support-reply/metrics", params=window)).json()["versions"]
        assert sum(r["generation_count"] for r in rows) == sum(1 for t in times if lo <= t < hi)

        schema = await http.get("/schema/openapi.json")
        assert "/api/v1/prompts/{name}/metrics" in schema.json()["paths"]


def _check_row(row: dict[str, Any], spans: list[Any], score_of: dict[bytes, float]) -> None:
    latency = np.array([latency_of(s) for s in spans])
    assert row["generation_count"] == len(spans)
    for field, q in (("median_latency_ms", 50), ("p95_latency_ms", 95), ("p99_latency_ms", 99)):
        assert _close(row[field], float(np.percentile(latency, q))), field
    assert _close(row["median_ttft_ms"], float(np.median([s.ttft_ms for s in spans])))
    assert _close(row["median_input_tokens"], float(np.median([s.input_tokens for s in spans])))
    assert _close(row["median_output_tokens"], float(np.median([s.output_tokens for s in spans])))
    assert _close(row["median_cost"], float(np.median([s.cost for s in spans])))
    assert row["total_input_tokens"] == sum(s.input_tokens for s in spans)
    assert row["total_output_tokens"] == sum(s.output_tokens for s in spans)
    assert _close(row["total_cost"], float(np.sum([s.cost for s in spans])), 1e-9)
    assert row["first_generation_at"] == _iso(min(s.start_time_unix_nano for s in spans))
    assert row["last_generation_at"] == _iso(max(s.start_time_unix_nano for s in spans))
    values = np.array([score_of[s.span_id] for s in spans if s.span_id in score_of])
    helpfulness = row["scores"]["helpfulness"]
    assert helpfulness["count"] == len(values)
    assert _close(helpfulness["mean"], float(values.mean()), 1e-9)
    assert (helpfulness["min"], helpfulness["max"]) == (values.min(), values.max())
    assert _close(helpfulness["median"], float(np.median(values)))
    assert _close(row["median_score"], float(np.median(values)))


async def test_a_key_of_one_project_never_sees_another_projects_metrics_or_runs(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    owner, other = await make_project(), await make_project()
    load = make_load(owner.id, 50, score_every=1)
    aggregator = start_service("aggregator", **_env(namespace))
    await publish_spans(bus, owner.id, load.spans)
    trace = load.spans[0].trace_id.hex()
    async with httpx.AsyncClient(base_url=aggregator.url, timeout=10) as http:

        async def stored() -> bool:
            r = await http.get(f"/api/v1/runs/{trace}", headers=owner.bearer)
            return r.status_code == 200

        await eventually(stored)
        assert (await http.get(f"/api/v1/runs/{trace}", headers=other.bearer)).status_code == 404
        assert (await http.get("/api/v1/runs", headers=other.bearer)).json()["runs"] == []
        metrics = await http.get("/api/v1/prompts/support-reply/metrics", headers=other.bearer)
        assert metrics.json()["versions"] == []
        assert (await http.get("/api/v1/versions/metrics", headers=other.bearer)).json()["versions"] == []
        assert (await http.get("/api/v1/versions/metrics")).status_code == 401
        assert len((await http.get("/api/v1/runs", headers=owner.bearer)).json()["runs"]) == 50


async def test_runs_list_newest_first_by_cursor_and_a_trace_shows_its_scores(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    project = await make_project()
    load = make_load(project.id, 120, score_every=1)
    aggregator = start_service("aggregator", **_env(namespace))
    await publish_spans(bus, project.id, load.spans)
    await publish_scores(bus, load.scores)
    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:

        async def all_scored() -> bool:
            rows = (await http.get("/api/v1/versions/metrics")).json()["versions"]
            return sum(r["scores"].get("helpfulness", {}).get("count", 0) for r in rows) == 120

        await eventually(all_scored)
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 50, "app_version": "baseline"}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/api/v1/runs", params=params)).json()
            seen.extend(page["runs"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 60 and len({r["span_id"] for r in seen}) == 60
        assert [r["start_time"] for r in seen] == sorted((r["start_time"] for r in seen), reverse=True)
        span = load.spans[0]
        trace = (await http.get(f"/api/v1/runs/{span.trace_id.hex()}")).json()
        assert trace["spans"][0]["span_id"] == span.span_id.hex()
        assert trace["spans"][0]["scores"][0]["value"] == load.scores[0].value
        assert (await http.get(f"/api/v1/runs/{uuid.uuid4().hex}")).status_code == 404
        assert (await http.get("/api/v1/runs/not-hex")).status_code == 400
