"""Metrics by prompt version and by app version, answered from rollups (never by scanning runs).

A range [from, to) is honoured to the minute (from rounded down, to rounded up) and covered by a
few aligned blocks per version (`rollup.cover`); their rows are merged into one cell per version
and turned into CONTRACT's ROW. A query reads every covered row's counters and revision, takes the
versions whose rows all match a cached ROW from the cache, and fetches the sketches of only the rows
it does not hold at their current revision; all other versions are merged together in one pass
(`version_merge.summarise_blobs`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.aggregator import rollup
from services.aggregator.block_cache import BlockCache, RowIdentity
from services.aggregator.rollup import NS_PER_MINUTE, Cell, RollupKey
from services.aggregator.store import Conn
from services.aggregator.version_merge import StoredRow, Summary, stored_row, summarise_blobs

# The rows' counters and revisions only: sketches are fetched for the rows the cache cannot answer.
_META_QUERY = """
SELECT width_minutes, bucket, app_version, prompt_name, prompt_version, model, r.xmin::text::bigint AS revision,
       generation_count, error_count, input_tokens, output_tokens, cost, first_ns, last_ns
FROM rollups r JOIN unnest($2::int[], $3::bigint[]) AS b(w, k) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1 AND ($4::text IS NULL OR r.prompt_name = $4) AND ($5::text IS NULL OR r.model = $5)
"""
_SKETCH_QUERY = """
SELECT r.width_minutes, r.bucket, r.app_version, r.prompt_name, r.prompt_version, r.model, r.sketches
FROM rollups r
JOIN unnest($2::int[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[]) AS u(w, k, a, n, v, m)
  ON (r.width_minutes, r.bucket, r.app_version, r.prompt_name, r.prompt_version, r.model)
   = (u.w, u.k, u.a, u.n, u.v, u.m)
WHERE r.project_id = $1
"""
CACHE = BlockCache.create()


@dataclass(frozen=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    label: str | None = None


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a time without a zone is UTC
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _blocks(conn: Conn, project: uuid.UUID, filters: Filters) -> list[tuple[int, int]]:
    """The aligned blocks covering the filters' range (the project's whole history where a bound is open)."""
    start = _ns(filters.start) // NS_PER_MINUTE if filters.start else None
    end = -(-_ns(filters.end) // NS_PER_MINUTE) if filters.end else None
    if start is None or end is None:  # only an open bound needs the history's extent
        widest = rollup.LEVELS[-1]
        span = await conn.fetchrow(
            "SELECT min(bucket) AS first, max(bucket) AS last FROM rollups "
            "WHERE project_id = $1 AND width_minutes = $2",
            project,
            widest,
        )
        if span is None or span["first"] is None:
            return []
        start = span["first"] if start is None else start
        end = span["last"] + widest if end is None else end
    return rollup.cover(start, end) if start < end else []


def _row_id(r: asyncpg.Record) -> tuple[int, int, RollupKey]:
    return (
        r["width_minutes"],
        r["bucket"],
        RollupKey(r["app_version"], r["prompt_name"], r["prompt_version"], r["model"]),
    )


def counters(rows: Sequence[asyncpg.Record]) -> Cell:
    """Exact counts, totals, first and last of a version's rows (no sketches)."""
    cell = Cell()
    for r in rows:
        cell.generations += r["generation_count"]
        cell.errors += r["error_count"]
        cell.input_tokens += r["input_tokens"]
        cell.output_tokens += r["output_tokens"]
        cell.cost += r["cost"]
        if r["first_ns"] is not None:
            cell.first_ns = r["first_ns"] if cell.first_ns is None else min(cell.first_ns, r["first_ns"])
            cell.last_ns = r["last_ns"] if cell.last_ns is None else max(cell.last_ns, r["last_ns"])
    return cell


def _median(summary: Summary | None) -> float | None:
    return summary.quantiles[0.5] if summary else None


def _score_stats(summary: Summary | None, errors: int) -> dict[str, Any]:
    if summary is None:
        return {"count": 0, **dict.fromkeys(("median", "mean", "min", "max", "p05", "p95")), "error_count": errors}
    return {
        "count": summary.count,
        "median": summary.quantiles[0.5],
        "mean": summary.mean,
        "min": summary.low,
        "max": summary.high,
        "p05": summary.quantiles[0.05],
        "p95": summary.quantiles[0.95],
        "error_count": errors,
    }


def metrics_row(
    version: int | str, labels: list[str], cell: Cell, summaries: dict[str, Summary], score_errors: dict[str, int]
) -> dict[str, Any]:
    """CONTRACT's ROW for one version: `cell`'s exact counters, and its merged metrics' summaries."""
    latency = summaries.get(rollup.LATENCY)
    names = sorted(
        {n[len(rollup.SCORE_PREFIX) :] for n in summaries if n.startswith(rollup.SCORE_PREFIX)} | set(score_errors)
    )
    return {
        "version": version,
        "labels": labels,
        "generation_count": cell.generations,
        "median_latency_ms": _median(latency),
        "p95_latency_ms": latency.quantiles[0.95] if latency else None,
        "p99_latency_ms": latency.quantiles[0.99] if latency else None,
        "median_ttft_ms": _median(summaries.get(rollup.TTFT)),
        "median_input_tokens": _median(summaries.get(rollup.INPUT_TOKENS)),
        "median_output_tokens": _median(summaries.get(rollup.OUTPUT_TOKENS)),
        "total_input_tokens": cell.input_tokens,
        "total_output_tokens": cell.output_tokens,
        "median_cost": _median(summaries.get(rollup.COST)),
        "total_cost": cell.cost,
        "median_score": _median(summaries.get(rollup.ALL_SCORES)),
        "scores": {n: _score_stats(summaries.get(rollup.score_metric(n)), score_errors.get(n, 0)) for n in names},
        "first_generation_at": iso(cell.first_ns),
        "last_generation_at": iso(cell.last_ns),
    }


@dataclass
class _Version:
    """One version's rows of a query, and what identifies their contents (identity and revision of each)."""

    rows: list[asyncpg.Record]
    ids: list[RowIdentity]
    revisions: list[int]
    fingerprint: frozenset[tuple[RowIdentity, int]] = frozenset()


def _versions(
    project: uuid.UUID, rows: list[asyncpg.Record], by: str, keep: Callable[[RollupKey], bool]
) -> dict[Hashable, _Version]:
    """The kept rows grouped by version (`by`: a RollupKey field), each with its identities and revisions."""
    versions: dict[Hashable, _Version] = {}
    for r in rows:
        width, bucket, app, prompt, version, model, revision = r[:7]
        key = RollupKey(app, prompt, version, model)
        if keep(key):
            g = getattr(key, by)
            v = versions.get(g)
            if v is None:
                v = versions[g] = _Version([], [], [])
            v.rows.append(r)
            v.ids.append((project, width, bucket, key))
            v.revisions.append(revision)
    for v in versions.values():
        v.fingerprint = frozenset(zip(v.ids, v.revisions, strict=True))
    return versions


async def _sketches_of(conn: Conn, project: uuid.UUID, ids: list[RowIdentity]) -> dict[RowIdentity, bytes]:
    if not ids:
        return {}
    rows = await conn.fetch(
        _SKETCH_QUERY,
        project,
        [i[1] for i in ids],
        [i[2] for i in ids],
        [i[3].app_version for i in ids],
        [i[3].prompt_name for i in ids],
        [i[3].prompt_version for i in ids],
        [i[3].model for i in ids],
    )
    return {(project, *_row_id(r)): r["sketches"] for r in rows}


async def _read(
    conn: Conn,
    project: uuid.UUID,
    blocks: list[tuple[int, int]],
    prompt_name: str | None,
    filters: Filters,
    by: str,
    keep: Callable[[RollupKey], bool],
    cached: Callable[[Hashable, _Version], bool],
) -> tuple[dict[Hashable, _Version], dict[Hashable, list[bytes]]]:
    """Every kept version's rows, and the sketch blobs of the versions without a cached ROW (fetching
    those of only the rows not held at their current revision)."""
    # one snapshot: the revisions read are those of the sketches read
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            _META_QUERY, project, [b[0] for b in blocks], [b[1] for b in blocks], prompt_name, filters.model
        )
        versions = _versions(project, rows, by, keep)
        held = {
            g: [CACHE.sketches.get(i, rev) for i, rev in zip(v.ids, v.revisions, strict=True)]
            for g, v in versions.items()
            if not cached(g, v)
        }
        wanted = [i for g, rs in held.items() for i, r in zip(versions[g].ids, rs, strict=True) if r is None]
        blobs = await _sketches_of(conn, project, wanted)
    return versions, {g: _blobs(versions[g], rs, blobs) for g, rs in held.items()}


def _blobs(v: _Version, held: list[StoredRow | None], fetched: dict[RowIdentity, bytes]) -> list[bytes]:
    """The version's rows' blobs: those the cache held, the others just fetched (and now cached)."""
    out = []
    for identity, revision, row in zip(v.ids, v.revisions, held, strict=True):
        if row is None:
            row = stored_row(fetched.get(identity, b""))
            CACHE.sketches.put(identity, revision, row)
        out.append(row.blob)
    return out


async def _grouped(
    conn: Conn,
    project: uuid.UUID,
    filters: Filters,
    prompt_name: str | None,
    by: str,
    keep: Callable[[RollupKey], bool],
) -> dict[Hashable, dict[str, Any]]:
    """Each version's ROW (without version and labels), from the cache where its rows did not change."""
    blocks = await _blocks(conn, project, filters)
    if not blocks:
        return {}
    scope = (project, by, prompt_name, filters.model, filters.label)
    out: dict[Hashable, dict[str, Any]] = {}

    def cached(g: Hashable, v: _Version) -> bool:
        hit = CACHE.rows.get((scope, g), v.fingerprint)
        if hit is not None:
            out[g] = hit
        return hit is not None

    versions, blobs = await _read(conn, project, blocks, prompt_name, filters, by, keep, cached)
    missing = list(blobs)
    merged = summarise_blobs([blobs[g] for g in missing])
    for g, summaries, errors in zip(missing, merged.summaries, merged.score_errors, strict=True):
        v = versions[g]
        row = metrics_row("", [], counters(v.rows), summaries, errors)
        CACHE.rows.put((scope, g), v.fingerprint, row)
        out[g] = row
    return {g: row for g, row in out.items() if row["generation_count"]}


async def prompt_metrics(pool: asyncpg.Pool, project: uuid.UUID, name: str, filters: Filters) -> dict[str, Any]:
    """{"prompt": name, "versions": [ROW…]}, newest version first."""
    async with pool.acquire() as conn:
        labels: dict[int, list[str]] = defaultdict(list)
        for r in await conn.fetch(
            "SELECT version, label FROM prompt_labels WHERE project_id = $1 AND name = $2 ORDER BY label",
            project,
            name,
        ):
            labels[r["version"]].append(r["label"])
        labelled = {v for v, ls in labels.items() if filters.label in ls}
        cells = await _grouped(
            conn,
            project,
            filters,
            name,
            by="prompt_version",
            keep=lambda k: k.prompt_version > 0 and (filters.label is None or k.prompt_version in labelled),
        )
    versions = sorted(cells, key=lambda v: -int(v))  # type: ignore[call-overload]
    return {
        "prompt": name,
        "versions": [{**cells[v], "version": int(v), "labels": labels.get(int(v), [])} for v in versions],  # type: ignore[call-overload]
    }


async def version_metrics(pool: asyncpg.Pool, project: uuid.UUID, filters: Filters) -> dict[str, Any]:
    """{"versions": [ROW…]} by app version (project_version_name), by name."""
    async with pool.acquire() as conn:
        labelled: set[tuple[str, int]] = set()
        if filters.label is not None:
            rows = await conn.fetch(
                "SELECT name, version FROM prompt_labels WHERE project_id = $1 AND label = $2", project, filters.label
            )
            labelled = {(r["name"], r["version"]) for r in rows}
        cells = await _grouped(
            conn,
            project,
            filters,
            None,
            by="app_version",
            keep=lambda k: filters.label is None or (k.prompt_name, k.prompt_version) in labelled,
        )
    return {"versions": [{**cells[v], "version": str(v)} for v in sorted(cells, key=str)]}
