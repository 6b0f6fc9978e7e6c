"""A metrics query reads its rollup rows in one statement where it can, and always from one snapshot."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest

from services.aggregator import query, rollup_rows, run_query
from services.aggregator.block_cache import BlockCache
from services.aggregator.rollup import Cell, to_blob
from services.aggregator.rollup_rows import Scope
from services.aggregator.runs import RUN_LATENCY
from services.aggregator.sketches import Sketch

BLOCKS = [(60, 1_000_020), (1, 1_000_080)]
_INSERT = """
INSERT INTO rollups (project_id, width_minutes, bucket, app_version, prompt_name, prompt_version, model,
                     generation_count, error_count, input_tokens, output_tokens, cost, first_ns, last_ns, sketches)
VALUES ($1, $2, $3, $4, 'reply', 1, 'gpt-4o', $5, 0, 0, 0, 0, NULL, NULL, $6)
"""
_UPDATE = """
UPDATE rollups SET generation_count = $5, sketches = $6
WHERE project_id = $1 AND width_minutes = $2 AND bucket = $3 AND app_version = $4
"""


def _blob(*latencies: float) -> bytes:
    return to_blob(Cell(generations=len(latencies), sketches={"latency_ms": Sketch.of(list(latencies))}))


class Recording:
    """A connection that counts its statements and can run something just before the n-th one."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.statements = 0
        self.transactions = 0
        self.before: dict[int, Callable[[], Any]] = {}

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.statements += 1
        if self.statements in self.before:
            await self.before[self.statements]()
        return await self.conn.fetch(query, *args)

    def transaction(self, **options: Any) -> Any:
        self.transactions += 1
        return self.conn.transaction(**options)


async def _rows(pool: asyncpg.Pool, project: uuid.UUID) -> None:
    for version, (width, bucket) in enumerate(BLOCKS):
        for app in ("v1", "v2"):
            await pool.execute(_INSERT, project, width, bucket, app, version + 1, _blob(100.0 + version))


@contextlib.asynccontextmanager
async def _recorded(pool: asyncpg.Pool, project: uuid.UUID) -> AsyncIterator[tuple[Recording, BlockCache]]:
    """The project's rows stored, a recording connection and an empty cache."""
    await _rows(pool, project)
    async with pool.acquire() as raw:
        yield Recording(raw), BlockCache.create()


async def _read(conn: Recording, cache: BlockCache, project: uuid.UUID, by: str = "app_version") -> rollup_rows.Read:
    scope = Scope(project, by, "reply" if by == "prompt_version" else None, None, None)
    return await rollup_rows.read(conn, cache, scope, BLOCKS, None, lambda g, v: True)  # type: ignore[arg-type]


async def test_blocks_not_read_before_bring_their_sketches_with_their_counters(
    pool: asyncpg.Pool, make_project: Callable[..., Any]
) -> None:
    project = (await make_project()).id
    async with _recorded(pool, project) as (conn, cache):
        first = await _read(conn, cache, project)
        assert (conn.statements, conn.transactions) == (1, 0)  # nothing was held: one statement read it all
        assert {g: sorted(blobs) for g, blobs in first.blobs.items()} == {
            ("", "v1"): sorted([_blob(100.0), _blob(101.0)]),
            ("", "v2"): sorted([_blob(100.0), _blob(101.0)]),
        }
        await pool.execute(_UPDATE, project, 1, BLOCKS[1][1], "v2", 2, _blob(101.0, 7.0))
        again = await _read(conn, cache, project)
        # the blocks were read: the rows held at their revision come from the cache, the updated one is fetched
        assert (conn.statements, conn.transactions) == (3, 0)
        assert sorted(again.blobs[("", "v2")]) == sorted([_blob(100.0), _blob(101.0, 7.0)])
        assert sorted(again.blobs[("", "v1")]) == sorted(first.blobs[("", "v1")])
        by_prompt = await _read(conn, cache, project, by="prompt_version")
        assert (conn.statements, conn.transactions) == (4, 0)  # another query of the project's blocks: all held
        assert sorted(by_prompt.blobs[1]) == sorted(again.blobs[("", "v1")] + again.blobs[("", "v2")])


async def test_a_row_updated_between_the_two_statements_is_read_again_from_one_snapshot(
    pool: asyncpg.Pool, make_project: Callable[..., Any]
) -> None:
    project = (await make_project()).id
    async with _recorded(pool, project) as (conn, cache):
        await _read(conn, cache, project)
        await pool.execute(_UPDATE, project, 60, BLOCKS[0][1], "v1", 2, _blob(100.0, 5.0))

        async def update_again() -> None:  # a batch commits between the counters and the sketches
            await pool.execute(_UPDATE, project, 60, BLOCKS[0][1], "v1", 3, _blob(100.0, 5.0, 9.0))

        conn.before[3] = update_again
        found = await _read(conn, cache, project)
    assert conn.transactions == 1  # the read was done again, in a repeatable-read transaction
    v1 = found.versions[("", "v1")]
    counts = {r["width_minutes"]: r["generation_count"] for r in v1.rows}
    # counters and sketches of one revision
    assert counts[60] == 3 and _blob(100.0, 5.0, 9.0) in found.blobs[("", "v1")]
    revision = await pool.fetchval(
        "SELECT xmin::text::bigint FROM rollups WHERE project_id = $1 AND width_minutes = 60 AND app_version = 'v1'",
        project,
    )
    assert revision in v1.revisions


HOURS = [1_000_020 + 60 * i for i in range(3)]


async def _hourly(pool: asyncpg.Pool, project: uuid.UUID) -> None:
    for i, bucket in enumerate(HOURS):
        for app in ("v1", "v2"):
            await pool.execute(_INSERT, project, 60, bucket, app, i + 1, _blob(100.0 + i))


async def _read_points(
    conn: Recording, cache: BlockCache, project: uuid.UUID, held: dict[Any, Any]
) -> rollup_rows.PointsRead:
    scope = Scope(project, "app_version", None, None, None)
    return await rollup_rows.read_points(conn, cache, scope, 60, (HOURS[0], HOURS[-1] + 60), None, held)  # type: ignore[arg-type]


async def test_a_series_fetches_only_the_points_whose_rows_changed_and_from_one_snapshot(
    pool: asyncpg.Pool, make_project: Callable[..., Any]
) -> None:
    project = (await make_project()).id
    await _hourly(pool, project)
    async with pool.acquire() as raw:
        conn, cache = Recording(raw), BlockCache.create()
        first = await _read_points(conn, cache, project, {})
        assert conn.statements == 2  # each row's buckets and revisions, then the rows of the points not held
        assert set(first.points) == {("", "v1"), ("", "v2")} and sorted(first.points[("", "v1")]) == HOURS
        assert sorted(first.blobs) == sorted((app, bucket) for app in first.points for bucket in HOURS)
        assert first.blobs[(("", "v2"), HOURS[1])] == [_blob(101.0)]
        assert [r["generation_count"] for r in first.rows[(("", "v1"), HOURS[2])]] == [3]
        held = {version: (dict(points), {}) for version, points in first.points.items()}
        again = await _read_points(conn, cache, project, held)
        assert conn.statements == 3 and again.blobs == {}  # nothing changed: one statement
        await pool.execute(_UPDATE, project, 60, HOURS[1], "v2", 7, _blob(101.0, 8.0))
        changed = await _read_points(conn, cache, project, held)
        assert list(changed.blobs) == [(("", "v2"), HOURS[1])]  # only the updated point is read
        assert changed.blobs[(("", "v2"), HOURS[1])] == [_blob(101.0, 8.0)]
        assert (conn.statements, conn.transactions) == (5, 0)

        async def update_again() -> None:  # a batch commits between the two statements
            await pool.execute(_UPDATE, project, 60, HOURS[1], "v2", 9, _blob(101.0, 8.0, 9.0))

        conn.before[7] = update_again
        found = await _read_points(conn, cache, project, held)
        assert conn.transactions == 1  # read again, in a repeatable-read transaction
        assert [r["generation_count"] for r in found.rows[(("", "v2"), HOURS[1])]] == [9]
        assert found.blobs[(("", "v2"), HOURS[1])] == [_blob(101.0, 8.0, 9.0)]


async def test_a_series_point_held_answers_again_only_while_its_rows_are_unchanged(
    pool: asyncpg.Pool, make_project: Callable[..., Any]
) -> None:
    project = (await make_project()).id
    await _hourly(pool, project)
    # a second model's row in v1's last hour: that point is made of two rows
    await pool.execute(_INSERT.replace("'gpt-4o'", "'gpt-4o-mini'"), project, 60, HOURS[2], "v1", 4, _blob(50.0))
    scope = Scope(project, "app_version", None, None, None)
    span = (HOURS[0], HOURS[-1] + 60)
    fields = ("generation_count", "median_latency_ms")
    async with pool.acquire() as conn:
        first = await query.grouped_points(conn, scope, 60, span, None, fields)
        assert list(first[("", "v1")]) == HOURS
        assert msgspec.json.decode(first[("", "v1")][HOURS[2]]) == {
            "at": query.iso(HOURS[2] * 60 * 10**9),
            "generation_count": 7,
            "median_latency_ms": pytest.approx(50.0, rel=0.01),  # the lower of its two rows' values
        }
        assert await query.grouped_points(conn, scope, 60, span, None, fields) == first
        await pool.execute(_UPDATE, project, 60, HOURS[0], "v2", 5, _blob(100.0, 30.0))
        again = await query.grouped_points(conn, scope, 60, span, None, fields)
        budget, query.CACHE.points.budget_bytes = query.CACHE.points.budget_bytes, 1
        try:  # nothing can be held: every point is made again, the same
            assert await query.grouped_points(conn, scope, 60, span, None, fields) == again
            assert await query.grouped_points(conn, scope, 60, span, None, fields) == again
        finally:
            query.CACHE.points.budget_bytes = budget
    assert msgspec.json.decode(again[("", "v2")][HOURS[0]])["generation_count"] == 5
    assert {v: {b: p for b, p in ps.items() if (v, b) != (("", "v2"), HOURS[0])} for v, ps in again.items()} == {
        v: {b: p for b, p in ps.items() if (v, b) != (("", "v2"), HOURS[0])} for v, ps in first.items()
    }


_RUN_INSERT = """
INSERT INTO run_rollups (project_id, width_minutes, bucket, project_name, app_version, run_count, error_count, cost,
                         sketches)
VALUES ($1, 60, $2, 'bot', $3, $4, $5, $6, $7)
"""


def _runs_blob(*latencies: float) -> bytes:
    return to_blob(Cell(sketches={RUN_LATENCY: Sketch.of(list(latencies))}))


async def test_a_series_run_point_is_made_again_only_when_its_run_rollup_changed(
    pool: asyncpg.Pool, make_project: Callable[..., Any]
) -> None:
    project = (await make_project()).id
    for i, bucket in enumerate(HOURS):
        await pool.execute(_RUN_INSERT, project, bucket, "v1", 2, i % 2, Decimal("0.5"), _runs_blob(10.0, 20.0 + i))
    await pool.execute(_RUN_INSERT, project, HOURS[0], "v2", 0, 0, Decimal(0), b"")  # no runs: no point
    span, fields = (HOURS[0], HOURS[-1] + 60), ("run_count", "run_error_rate", "mean_run_latency_ms")
    async with pool.acquire() as conn:
        first = await run_query.series_points(conn, project, 60, span, None, fields)
        assert sorted(first) == [(("bot", "v1"), bucket) for bucket in HOURS]
        assert msgspec.json.decode(first[(("bot", "v1"), HOURS[1])]) == {
            "run_count": 2,
            "run_error_rate": 0.5,
            "mean_run_latency_ms": 15.5,
        }
        assert await run_query.series_points(conn, project, 60, span, None, fields) == first
        await pool.execute(
            "UPDATE run_rollups SET run_count = 3, sketches = $3 WHERE project_id = $1 AND bucket = $2 "
            "AND app_version = 'v1'",
            project,
            HOURS[2],
            _runs_blob(10.0, 22.0, 30.0),
        )
        again = await run_query.series_points(conn, project, 60, span, None, fields)
        only = await run_query.series_points(conn, project, 60, span, "other-app", fields)
    assert msgspec.json.decode(again[(("bot", "v1"), HOURS[2])]) == {
        "run_count": 3,
        "run_error_rate": 0.0,
        "mean_run_latency_ms": pytest.approx(62 / 3),
    }
    assert {p: e for p, e in again.items() if p[1] != HOURS[2]} == {p: e for p, e in first.items() if p[1] != HOURS[2]}
    assert only == {}
