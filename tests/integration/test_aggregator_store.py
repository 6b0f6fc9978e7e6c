"""The span sink against the real Postgres: batches COPYed straight in, a redelivery mixed with new
spans stored and counted once (the staged ON CONFLICT path), every level exact, and the C
decoder's COPY bytes read back as the spans they came from."""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from vane.v1 import bus_pb2

from services.aggregator import store
from services.aggregator.consume import SpanSink
from services.aggregator.decode import time_of
from services.aggregator.rollup import LEVELS
from tests.support.aggregator_load import make_load


def _messages(project: Any, spans: list[bus_pb2.CanonicalSpan], per: int = 100) -> list[Any]:
    return [
        types.SimpleNamespace(
            headers=None,
            data=bus_pb2.SpanBatch(
                schema_version=1, project_id=str(project), spans=spans[i : i + per], received_unix_nano=time.time_ns()
            ).SerializeToString(),
        )
        for i in range(0, len(spans), per)
    ]


async def _levels(pool: asyncpg.Pool, project: Any) -> set[tuple[int, int, int]]:
    rows = await pool.fetch(
        "SELECT width_minutes, sum(generation_count) AS n, sum(input_tokens) AS i FROM rollups "
        "WHERE project_id = $1 GROUP BY 1",
        project,
    )
    return {(r["width_minutes"], r["n"], r["i"]) for r in rows}


async def test_a_redelivery_mixed_with_new_spans_is_stored_and_counted_once(
    pool: asyncpg.Pool, make_project: Callable[..., Any]
) -> None:
    project = (await make_project()).id
    load = make_load(project, 600, score_every=0, spread_seconds=300)
    partitions = store.Partitions()
    await partitions.load(pool)
    sink = SpanSink(pool, None, partitions)  # type: ignore[arg-type]  # nothing here is dead-lettered
    first, second = load.spans[:400], load.spans[200:]
    await sink.handle(_messages(project, first))
    await sink.handle(_messages(project, second))  # half of it was stored by the first
    await sink.handle(_messages(project, second))  # all of it was

    stored = await pool.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", project)
    tokens = sum(s.input_tokens for s in load.spans)
    assert stored == len(load.spans)
    assert await _levels(pool, project) == {(w, len(load.spans), tokens) for w in LEVELS}


async def test_copied_rows_read_back_as_the_spans_sent(pool: asyncpg.Pool, make_project: Callable[..., Any]) -> None:
    project = (await make_project()).id
    load = make_load(project, 50, score_every=0, spread_seconds=60)
    load.spans[0].input = "ünïcödé ✓"
    load.spans[0].ClearField("ttft_ms")
    partitions = store.Partitions()
    await partitions.load(pool)
    await SpanSink(pool, None, partitions).handle(_messages(project, load.spans))  # type: ignore[arg-type]
    rows = {
        r["span_id"]: r
        for r in await pool.fetch(
            "SELECT span_id, trace_id, start_ns, end_ns, latency_ms, ttft_ms, input_tokens, cost, status, model, "
            "input, prompt_version, is_generation, start_time FROM runs WHERE project_id = $1",
            project,
        )
    }
    for span in load.spans:
        row = rows[span.span_id]
        assert row["trace_id"] == span.trace_id and row["model"] == span.model and row["input"] == span.input
        assert (row["start_ns"], row["end_ns"], row["status"]) == (
            span.start_time_unix_nano,
            span.end_time_unix_nano,
            span.status,
        )
        assert row["latency_ms"] == (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        assert row["ttft_ms"] == (span.ttft_ms if span.HasField("ttft_ms") else None)
        assert (row["input_tokens"], row["cost"], row["prompt_version"]) == (
            span.input_tokens,
            span.cost,
            span.prompt_version,
        )
        assert row["is_generation"] and row["start_time"] == time_of(span.start_time_unix_nano)


async def test_a_day_dropped_by_another_replica_is_made_again_by_the_redelivery(
    pool: asyncpg.Pool, make_project: Callable[..., Any]
) -> None:
    project = (await make_project()).id
    old = time.time_ns() - 40 * 86_400 * 10**9  # past the default retention
    early, late = (make_load(project, 20, seed=seed, start_ns=old, spread_seconds=60).spans for seed in (1, 2))
    partitions = store.Partitions()
    await partitions.load(pool)
    sink = SpanSink(pool, None, partitions)  # type: ignore[arg-type]  # nothing here is dead-lettered
    await sink.handle(_messages(project, early))
    day = time_of(early[0].start_time_unix_nano).date()
    await pool.execute(f"DROP TABLE runs_{day:%Y%m%d}")  # as another replica's retention does

    with pytest.raises(asyncpg.CheckViolationError):  # this replica still believes the day is there
        await sink.handle(_messages(project, late))
    await sink.handle(_messages(project, late))  # the redelivery
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", project) == len(late)
