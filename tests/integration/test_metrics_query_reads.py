"""A metrics query reads its rollup rows in one statement where it can, and always from one snapshot."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from services.aggregator import rollup_rows
from services.aggregator.block_cache import BlockCache
from services.aggregator.rollup import Cell, to_blob
from services.aggregator.rollup_rows import Scope
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
