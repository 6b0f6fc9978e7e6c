"""A metrics query's rollup rows, read with as few round trips as the cache allows.

One statement reads the counters and revision of every row of the covered blocks, and the sketches
of the rows of blocks this process has not read yet (a new edge block, a cold start). The rows of
blocks read before, by any query of the project, are mostly held in the cache at their revision
(`BlockCache.sketches`); the few that are not (updated since, forgotten, or filtered out by the query
that read the block) are fetched by a second statement. Both statements must
see one snapshot (a batch commits all of its rows at once): the second one returns the revisions it
read, and if any row changed in between, the read is done again in a repeatable-read transaction.

A time series (`read_points`) reads one level's blocks over a range, a point per (version, block):
its first statement returns each row identity's buckets and revisions as two arrays (a few rows in
all, not a record per point), which is all a point held in `BlockCache.points` needs to be reused;
the rows of the other points, with the sketches the cache does not hold, come from a second statement,
with the same snapshot check.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg

from services.aggregator.block_cache import BlockCache, HeldPoints, RowIdentity
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
# A series' rows: per row identity but the block, its buckets and revisions (one order within a group).
_SERIES_QUERY = """
SELECT project_name, app_version, prompt_name, prompt_version, model,
       array_agg(bucket) AS buckets, array_agg(xmin::text::bigint) AS revisions
FROM rollups
WHERE project_id = $1 AND width_minutes = $2 AND bucket >= $3 AND bucket < $4
  AND ($5::text IS NULL OR prompt_name = $5) AND ($6::text IS NULL OR model = $6)
  AND ($7::text IS NULL OR project_name = $7) AND ($8::text IS NULL OR app_version = $8)
GROUP BY project_name, app_version, prompt_name, prompt_version, model
"""
# The named rows as _ROWS_QUERY reads them; their sketches only where asked (the cache holds the others).
# The rows of a series' blocks as _ROWS_QUERY reads them (a few blocks, or all of a cold series: by block,
# which Postgres reads along the key, not by row); their sketches only where asked (others are held).
_POINT_ROWS_QUERY = """
SELECT r.width_minutes, r.bucket, r.project_name, r.app_version, r.prompt_name, r.prompt_version, r.model,
       r.xmin::text::bigint AS revision,
       generation_count, error_count, input_tokens, output_tokens, cost, input_cost, output_cost, first_ns, last_ns,
       CASE WHEN b.blob THEN r.sketches END AS sketches
FROM rollups r
JOIN unnest($3::bigint[], $4::bool[]) AS b(k, blob) ON r.bucket = b.k
WHERE r.project_id = $1 AND r.width_minutes = $2
  AND ($5::text IS NULL OR r.prompt_name = $5) AND ($6::text IS NULL OR r.model = $6)
  AND ($7::text IS NULL OR r.project_name = $7) AND ($8::text IS NULL OR r.app_version = $8)
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
    versions = _versions(scope.project.int, rows, scope.by, keep)
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


def _versions(project: int, rows: list[asyncpg.Record], by: str, keep: Keep) -> dict[Hashable, Version]:
    versions: dict[Hashable, Version] = {}
    by_app = by == "app_version"
    for r in rows:
        if keep is None or keep(r[4], r[5]):
            g = (r[2], r[3]) if by_app else r[5]
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


# A row of a series but its block: (project name, app version, prompt name, prompt version, model).
Series = tuple[str, str, str, int, str]
# A point's rows: (row, revision) for one row, a frozenset of them for several (never equal to one row's).
PointRows = tuple[Series, int] | frozenset[tuple[Series, int]]


@dataclass
class PointsRead:
    """Every kept point's rows (by version, then bucket), what was held of each version when its points
    were found held (a copy: other queries may change the cache meanwhile), and the rows and blobs of
    the points not held, by (version, bucket)."""

    points: dict[Hashable, dict[int, PointRows]]
    held: dict[Hashable, dict[int, bytes]]
    rows: dict[tuple[Hashable, int], list[asyncpg.Record]]
    blobs: dict[tuple[Hashable, int], list[bytes]]


async def read_points(
    conn: Conn,
    cache: BlockCache,
    scope: Scope,
    width: int,
    span: tuple[int, int],
    keep: Keep,
    held: dict[Hashable, HeldPoints],
) -> PointsRead:
    """The points of the blocks of `width` in `span` (minutes) in `scope`, and the rows and blobs of each
    point whose rows and revisions are not those `held` has it made of."""
    found = await _read_points(conn, cache, scope, width, span, keep, held, snapshot=False)
    if found is None:  # a row changed between the two statements
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            found = await _read_points(conn, cache, scope, width, span, keep, held, snapshot=True)
    assert found is not None
    return found


async def _read_points(
    conn: Conn,
    cache: BlockCache,
    scope: Scope,
    width: int,
    span: tuple[int, int],
    keep: Keep,
    held: dict[Hashable, HeldPoints],
    snapshot: bool,
) -> PointsRead | None:
    series = await conn.fetch(
        _SERIES_QUERY,
        scope.project,
        width,
        *span,
        scope.prompt_name,
        scope.model,
        scope.project_name,
        scope.app_version,
    )
    points = _points(series, scope.by, keep)
    asked: list[tuple[Hashable, int]] = []
    held_now: dict[Hashable, dict[int, bytes]] = {}
    for version, mine in points.items():
        rows_held, encoded = held.get(version, _NONE_HELD)
        held_now[version] = encoded.copy()
        if not mine.items() <= rows_held.items():  # some point changed, or is new: those are asked for
            asked.extend((version, bucket) for bucket, rows in mine.items() if rows_held.get(bucket) != rows)
    if not asked:
        return PointsRead(points, held_now, {}, {})
    project = scope.project.int
    # each asked point's rows, and their sketches where the cache holds them; the sketches of a block with
    # a row not held are read (the cache is left as it is: a series' rows would push out metrics queries')
    named: list[tuple[tuple[int, int, str, str, str, int, str], int, StoredRow | None]] = []
    blob_of: dict[int, bool] = {}
    for version, bucket in asked:
        rows = points[version][bucket]
        for (name, app, prompt, prompt_version, model), revision in [rows] if isinstance(rows, tuple) else rows:
            row_id = (width, bucket, name, app, prompt, prompt_version, model)
            stored = cache.sketches.get((project, row_id), revision)
            named.append((row_id, revision, stored))
            blob_of[bucket] = blob_of.get(bucket, False) or stored is None
    fetched = await conn.fetch(
        _POINT_ROWS_QUERY,
        scope.project,
        width,
        list(blob_of),
        list(blob_of.values()),
        scope.prompt_name,
        scope.model,
        scope.project_name,
        scope.app_version,
    )
    by_identity = {r[:_IDENTITY]: r for r in fetched}
    rows_of: dict[tuple[Hashable, int], list[asyncpg.Record]] = {}
    blobs: dict[tuple[Hashable, int], list[bytes]] = {}
    at = 0
    for g in asked:
        mine_rows = rows_of[g] = []
        out = blobs[g] = []
        rows = points[g[0]][g[1]]
        for _ in range(1 if isinstance(rows, tuple) else len(rows)):
            row_id, revision, stored = named[at]
            at += 1
            r = by_identity.get(row_id)
            if r is None or r[_REVISION] != revision:  # updated (or gone) since the first statement
                if snapshot:
                    raise RuntimeError("a rollup row changed within one snapshot")
                return None
            mine_rows.append(r)
            out.append(stored.blob if stored is not None else r[_SKETCHES] or b"")
    return PointsRead(points, held_now, rows_of, blobs)


_NONE_HELD: HeldPoints = ({}, {})


def _points(series: list[asyncpg.Record], by: str, keep: Keep) -> dict[Hashable, dict[int, PointRows]]:
    """Each kept version's points: each bucket's rows and revisions."""
    points: dict[Hashable, dict[int, PointRows]] = {}
    by_app = by == "app_version"
    for r in series:
        if keep is not None and not keep(r[2], r[3]):
            continue
        row: Series = (r[0], r[1], r[2], r[3], r[4])
        version = (r[0], r[1]) if by_app else r[3]
        mine = points.get(version)
        if mine is None:  # the version's first row: its (row, revision) pairs made in C
            points[version] = dict(zip(r[5], zip(itertools.repeat(row), r[6], strict=False), strict=True))
            continue
        for bucket, revision in zip(r[5], r[6], strict=True):
            old = mine.get(bucket)
            if old is None:
                mine[bucket] = (row, revision)
            else:  # a second row in the point (another model, prompt or app version of it)
                both = frozenset([old]) if isinstance(old, tuple) else old
                mine[bucket] = both | {(row, revision)}
    return points
