"""Versions as a user reads them: an app's versions apart from another app's, numbers that are values
the data could hold (whole tokens, exact score medians, decimal cost sums), and time series whose
points add up to the range's ROW, with the deployments marked."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
from vane.v1 import bus_pb2

from services.common.bus import Bus
from tests.support.aggregator_load import STREAM_MAX_BYTES, eventually, publish_scores, publish_spans

pytestmark = pytest.mark.slow
MINUTE_NS = 60_000_000_000


def _env(namespace: str) -> dict[str, str]:
    return {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES)}


def _generation(project: uuid.UUID, rng: np.random.Generator, start_ns: int, **fields: Any) -> bus_pb2.CanonicalSpan:
    inputs, outputs = int(rng.integers(1, 2000)), int(rng.integers(1, 400))
    # prices as a table gives them: dollars per million tokens, so costs have many decimals
    input_cost, output_cost = inputs * 2.5 / 1e6, outputs * 10.0 / 1e6
    latency_ms = float(rng.lognormal(6.0, 0.7))
    return bus_pb2.CanonicalSpan(
        project_id=str(project),
        trace_id=secrets.token_bytes(16),
        span_id=secrets.token_bytes(8),
        name="reply",
        kind="llm",
        model="gpt-4o",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + int(latency_ms * 1e6),
        input_tokens=inputs,
        output_tokens=outputs,
        cost=input_cost + output_cost,
        input_cost=input_cost,
        output_cost=output_cost,
        **fields,
    )


def _score(span: bus_pb2.CanonicalSpan, name: str, value: float, data_type: int) -> bus_pb2.Score:
    return bus_pb2.Score(
        project_id=span.project_id,
        score_id=secrets.token_hex(8),
        trace_id=span.trace_id,
        span_id=span.span_id,
        name=name,
        value=value,
        data_type=data_type,
        source=bus_pb2.SCORE_SOURCE_ANNOTATION,
        created_unix_nano=time.time_ns(),
    )


async def test_two_apps_with_a_v1_each_are_two_rows_and_every_number_is_one_the_data_could_hold(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    project = await make_project()
    rng = np.random.default_rng(13)
    now = time.time_ns() - 3600 * 10**9
    spans = [
        _generation(
            project.id,
            rng,
            now + i * 10**9,
            project_name=("bot-a", "bot-b")[i % 2],
            app_version="v1",
            status=bus_pb2.SPAN_STATUS_ERROR if i % 10 == 0 else bus_pb2.SPAN_STATUS_OK,
        )
        for i in range(400)
    ]
    thumbs = {s.span_id: float(i % 5 != 0) for i, s in enumerate(spans)}  # 80% thumbs up
    rating = {s.span_id: float(rng.integers(1, 6)) for s in spans}
    scores = [_score(s, "thumbs", thumbs[s.span_id], bus_pb2.SCORE_DATA_TYPE_BOOLEAN) for s in spans]
    scores += [_score(s, "helpfulness", rating[s.span_id], bus_pb2.SCORE_DATA_TYPE_NUMERIC) for s in spans]
    aggregator = start_service("aggregator", **_env(namespace))
    await publish_spans(bus, project.id, spans, per_batch=97)
    await publish_scores(bus, scores)
    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:

        async def settled() -> list[dict[str, Any]] | None:
            rows = (await http.get("/api/v1/versions/metrics")).json()["versions"]
            done = sum(r["scores"].get("helpfulness", {}).get("count", 0) for r in rows) == len(spans)
            return rows if done and sum(r["generation_count"] for r in rows) == len(spans) else None

        rows = await eventually(settled, timeout=60)
        assert [(r["project_name"], r["version"]) for r in rows] == [("bot-a", "v1"), ("bot-b", "v1")]
        only_a = (await http.get("/api/v1/versions/metrics", params={"project_name": "bot-a"})).json()["versions"]
        assert [(r["project_name"], r["version"]) for r in only_a] == [("bot-a", "v1")]
        for row in rows:
            mine = [s for s in spans if s.project_name == row["project_name"]]
            _check_exact(row, mine, thumbs, rating)


def _check_exact(
    row: dict[str, Any], spans: list[bus_pb2.CanonicalSpan], thumbs: dict[bytes, float], rating: dict[bytes, float]
) -> None:
    inputs = np.array([s.input_tokens for s in spans])
    totals = inputs + np.array([s.output_tokens for s in spans])
    assert row["generation_count"] == len(spans)
    assert row["error_count"] == sum(s.status == bus_pb2.SPAN_STATUS_ERROR for s in spans)
    assert row["error_rate"] == row["error_count"] / len(spans)
    assert row["total_tokens"] == int(totals.sum())
    for field, values in (("median_input_tokens", inputs), ("median_total_tokens", totals)):
        assert isinstance(row[field], int), f"{field} is {row[field]!r}, not a whole number of tokens"
        exact = float(np.median(values))
        assert abs(row[field] - exact) <= 0.01 * exact + 0.5
    # exact decimal sums: the JSON number nearest to the sum of the costs as decimals
    for field, attribute in (("total_cost", "cost"), ("total_input_cost", "input_cost")):
        expected = sum((Decimal(repr(getattr(s, attribute))) for s in spans), Decimal(0))
        assert row[field] == float(expected.quantize(Decimal(10) ** -12)), field
    assert abs(row["mean_cost"] - float(np.mean([s.cost for s in spans]))) <= 1e-12
    up = np.array([thumbs[s.span_id] for s in spans])
    stars = np.array([rating[s.span_id] for s in spans])
    assert row["scores"]["thumbs"]["median"] == 1.0 and row["scores"]["thumbs"]["mean"] == pytest.approx(up.mean())
    ordered = np.sort(stars)
    for field, q in (("median", 0.5), ("p05", 0.05), ("p95", 0.95)):
        assert row["scores"]["helpfulness"][field] == ordered[int(q * (len(ordered) - 1))], field


async def test_time_series_points_add_up_to_the_range_and_label_moves_are_its_markers(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    project = await make_project()
    registry = start_service("registry", **_env(namespace))
    aggregator = start_service("aggregator", **_env(namespace))
    rng = np.random.default_rng(5)
    start = (time.time_ns() - 5 * 3600 * 10**9) // (60 * MINUTE_NS) * (60 * MINUTE_NS)
    spans = [
        _generation(
            project.id,
            rng,
            start + int(rng.random() * 5 * 3600 * 10**9),
            project_name="bot",
            app_version="v1",
            prompt_name="reply",
            prompt_version=1 + i % 2,
        )
        for i in range(600)
    ]
    async with (
        httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as prompts,
        httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http,
    ):
        for text in ("Hi {{name}}", "Hello {{name}}"):
            created = await prompts.post("/api/v1/prompts", json={"name": "reply", "type": "text", "prompt": text})
            assert created.status_code == 201, created.text
        moved = await prompts.patch("/api/v1/prompts/reply/versions/2", json={"labels": ["production"]})
        assert moved.status_code == 200, moved.text
        await publish_spans(bus, project.id, spans, per_batch=113)

        async def counted() -> bool:
            rows = (await http.get("/api/v1/prompts/reply/metrics")).json()["versions"]
            return sum(r["generation_count"] for r in rows) == len(spans)

        await eventually(counted, timeout=60)
        window = {"from": _iso(start), "to": _iso(start + 5 * 60 * MINUTE_NS + 60 * MINUTE_NS)}
        whole = (await http.get("/api/v1/prompts/reply/metrics", params=window)).json()["versions"]
        series = (await http.get("/api/v1/prompts/reply/timeseries", params={**window, "interval": "hour"})).json()
        assert series["interval"] == "hour"
        assert [s["version"] for s in series["series"]] == [row["version"] for row in whole] == [2, 1]
        for line, row in zip(series["series"], whole, strict=True):
            points = line["points"]
            assert sum(p["generation_count"] for p in points) == row["generation_count"]
            assert sum(p["total_tokens"] for p in points) == row["total_tokens"]
            assert sum(Decimal(repr(p["total_cost"])) for p in points) == Decimal(repr(row["total_cost"]))
            assert min(p["first_generation_at"] for p in points) == row["first_generation_at"]
            assert points == sorted(points, key=lambda p: p["at"])
        moves = [(m["label"], m["from_version"], m["to_version"]) for m in series["markers"]]
        assert moves == [("latest", None, 1), ("latest", 1, 2), ("production", None, 2)]
        assert whole[0]["labels"] == ["latest", "production"]
        assert [m["label"] for m in whole[0]["label_history"]].count("production") == 1

        few = await http.get("/api/v1/prompts/reply/timeseries", params={**window, "metrics": "generation_count"})
        assert set(few.json()["series"][0]["points"][0]) == {"at", "generation_count"}
        assert few.json()["interval"] == "5m"  # by the minute, 360 points would be past 300
        bad = await http.get("/api/v1/prompts/reply/timeseries", params={"metrics": "latency"})
        assert bad.status_code == 400 and "latency" in bad.json()["error"]["message"]


def _iso(ns: int) -> str:
    from services.aggregator.query import iso

    return iso(ns) or ""
