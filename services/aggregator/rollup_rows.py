"""A metrics query's rollup rows, read with as few round trips as the cache allows.

One statement reads the counters and revision of every row of the covered blocks, and the sketches
of the rows of blocks this process has not read yet (a new edge block, a cold start). The rows of
blocks read before, by any query of the project, are mostly held in the cache at their revision
(`BlockCache.sketches`); the few that are not (updated since, forgotten, or filtered out by the query
that read the block) are fetched by a second statement. Both statements must
see one snapshot (a batch commits all of its rows at once): the second one returns the revisions it
read, and if any row changed in between, the read is done again in a repeatable-read transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg

from services.aggregator.block_cache import BlockCache, RowIdentity
from services.aggregator.store import Conn
from services.aggregator.version_merge import StoredRow, stored_row

# Every covered row's counters and revision; its sketches where its block is flagged (not read before).
_ROWS_QUERY = """
SELECT r.width_minutes, r.bucket, r.project_name, r.app_version, r.prompt_name, r.prompt_version, r.model,
       r.xmin::text::bigint AS revision,
       generation_count, error_count, input_tokens, output_tokens, cost, input_cost, output_cost, first_ns, last_ns,
       CASE WHEN b.unread THEN r.sketches END AS sketches
FROM rollups r
JOIN unnest($2::int[], $3::bigint[], $6::bool[]) AS b(w, k, unread) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1 AND ($4::text IS NULL OR r.prompt_name = $4) AND ($5::text IS NULL OR r.model = $5)
  AND ($7::text IS NULL OR r.project_name = $7) AND ($8::text IS NULL OR r.app_version = $8)
"""
_SKETCH_QUERY = """
SELECT r.width_minutes, r.bucket, r.project_name, r.app_version, r.prompt_name, r.prompt_version, r.model,
       r.xmin::text::bigint AS revision, r.sketches
FROM rollups r
JOIN unnest($2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[])
  AS u(w, k, p, a, n, v, m)
  ON (r.width_minutes, r.bucket, r.project_name, r.app_version, r.prompt_name, r.prompt_version, r.model)
   = (u.w, u.k, u.p, u.a, u.n, u.v, u.m)
WHERE r.project_id = $1
"""
# Positions in a row of _ROWS_QUERY: its identity is the first seven columns.
_IDENTITY = 7
_REVISION, _SKETCHES = 7, 17
# generation_count, error_count, input_tokens, output_tokens, cost, input_cost, output_cost, first_ns, last_ns
COUNTERS = slice(8, 17)
# (prompt name, prompt version) -> whether a row counts toward the query; None: every row does.
Keep = Callable[[str, int], bool] | None


class Scope(NamedTuple):
    """What a query reads: the project's rows passing these filters, grouped by `by` (a RollupKey field).
    A NamedTuple: it is part of every cached ROW's key, and a tuple hashes in C."""

    project: uuid.UUID
    by: str  # "app_version" (grouped by (project name, app version)) or "prompt_version"
    prompt_name: str | None
    model: str | None
    label: str | None
    project_name: str | None = None
    app_version: str | None = None
    per_block: bool = False  # group by (version, bucket): a time series' points


@dataclass
class Version:
    """One version's rows of a query, and what identifies their contents (identity and revision of each)."""

    rows: list[asyncpg.Record] = field(default_factory=list)
    ids: list[RowIdentity] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)
    fingerprint: frozenset[tuple[RowIdentity, int]] = frozenset()


@dataclass
class Read:
    """Every kept version's rows, and the sketch blobs of the rows of the versions asked for."""

    versions: dict[Hashable, Version]
    blobs: dict[Hashable, list[bytes]]


async def read(
    conn: Conn,
    cache: BlockCache,
    scope: Scope,
    blocks: list[tuple[int, int]],
    keep: Keep,
    wanted: Callable[[Hashable, Version], bool],
) -> Read:
    """The rows of `blocks` in `scope`, and the blobs of those of each version `wanted` says it needs."""
    found = await _read(conn, cache, scope, blocks, keep, wanted, snapshot=False)
    if found is None:  # a row changed between the two statements
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            found = await _read(conn, cache, scope, blocks, keep, wanted, snapshot=True)
    assert found is not None
    return found


async def _read(
    conn: Conn,
    cache: BlockCache,
    scope: Scope,
    blocks: list[tuple[int, int]],
    keep: Keep,
    wanted: Callable[[Hashable, Version], bool],
    snapshot: bool,
) -> Read | None:
    """The read, or None when a row changed between its two statements (never in a `snapshot`)."""
    unread = [(scope.project, *b) not in cache.blocks_read for b in blocks]
    rows = await conn.fetch(
        _ROWS_QUERY,
        scope.project,
        [b[0] for b in blocks],
        [b[1] for b in blocks],
        scope.prompt_name,
        scope.model,
        unread,
        scope.project_name,
        scope.app_version,
    )
    versions = _versions(scope.project.int, rows, scope.by, keep, scope.per_block)
    held: dict[Hashable, list[StoredRow | bytes | None]] = {}
    missing: list[tuple[RowIdentity, int]] = []
    for g, v in versions.items():
        if wanted(g, v):
            held[g] = _held(cache, v, missing)
    fetched = await _sketches_of(conn, scope.project, [identity for identity, _ in missing])
    if not snapshot and any(fetched.get(i, (None, b""))[0] != revision for i, revision in missing):
        return None
    for b in blocks:
        cache.blocks_read.add((scope.project, *b))
    return Read(versions, {g: _blobs(cache, versions[g], rows_held, fetched) for g, rows_held in held.items()})


def _versions(
    project: int, rows: list[asyncpg.Record], by: str, keep: Keep, per_block: bool
) -> dict[Hashable, Version]:
    versions: dict[Hashable, Version] = {}
    by_app = by == "app_version"
    for r in rows:
        if keep is None or keep(r[4], r[5]):
            g = (r[2], r[3]) if by_app else r[5]
            if per_block:
                g = (g, r[1])
            v = versions.get(g)
            if v is None:
                v = versions[g] = Version()
            v.rows.append(r)
            v.ids.append((project, r[:_IDENTITY]))
            v.revisions.append(r[_REVISION])
    for v in versions.values():
        v.fingerprint = frozenset(zip(v.ids, v.revisions, strict=True))
    return versions


def _held(cache: BlockCache, v: Version, missing: list[tuple[RowIdentity, int]]) -> list[StoredRow | bytes | None]:
    """Each row's sketches as the cache holds them at its revision, or as the first statement read them;
    None (and added to `missing`) for the others."""
    out: list[StoredRow | bytes | None] = []
    for identity, revision, r in zip(v.ids, v.revisions, v.rows, strict=True):
        row = cache.sketches.get(identity, revision)
        if row is None:
            row = r[_SKETCHES]
            if row is None:
                missing.append((identity, revision))
        out.append(row)
    return out


async def _sketches_of(conn: Conn, project: uuid.UUID, ids: list[RowIdentity]) -> dict[RowIdentity, tuple[int, bytes]]:
    """(revision, sketches) of each row named."""
    if not ids:
        return {}
    columns = [list(column) for column in zip(*(row_id for _, row_id in ids), strict=True)]
    rows = await conn.fetch(_SKETCH_QUERY, project, *columns)
    return {(project.int, r[:_IDENTITY]): (r[_REVISION], r["sketches"]) for r in rows}


def _blobs(
    cache: BlockCache, v: Version, held: list[StoredRow | bytes | None], fetched: dict[RowIdentity, tuple[int, bytes]]
) -> list[bytes]:
    """The version's rows' blobs: those the cache held, the others just read (and now cached)."""
    out = []
    for identity, revision, row in zip(v.ids, v.revisions, held, strict=True):
        if isinstance(row, StoredRow):
            out.append(row.blob)
            continue
        blob = (row if row is not None else fetched.get(identity, (revision, b""))[1]) or b""
        cache.sketches.put(identity, revision, stored_row(blob))
        out.append(blob)
    return out
