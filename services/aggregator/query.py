"""Metrics by prompt version and by app version, answered from rollups (never by scanning runs).

A range [from, to) is honoured to the minute (from rounded down, to rounded up) and covered by a
few aligned blocks per version (`rollup.cover`); their rows are merged into one cell per version
and turned into CONTRACT's ROW.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.aggregator import rollup
from services.aggregator.block_cache import BlockCache, Fingerprint, MergedSketches
from services.aggregator.rollup import NS_PER_MINUTE, Cell, RollupKey
from services.aggregator.sketches import Sketch, merge, merge_encoded_groups
from services.aggregator.store import Conn

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
# A block that ended this long ago is settled: only late spans and scores still change it.
SETTLED_MINUTES = 5
CACHE = BlockCache.create()

RowId = tuple[int, int, RollupKey]


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
    """The aligned blocks covering the filters' range (the project's whole history by default)."""
    widest = rollup.LEVELS[-1]
    span = await conn.fetchrow(
        "SELECT min(bucket) AS first, max(bucket) AS last FROM rollups WHERE project_id = $1 AND width_minutes = $2",
        project,
        widest,
    )
    if span is None or span["first"] is None:
        return []
    start = _ns(filters.start) // NS_PER_MINUTE if filters.start else span["first"]
    end = -(-_ns(filters.end) // NS_PER_MINUTE) if filters.end else span["last"] + widest
    return rollup.cover(start, end) if start < end else []


def _row_id(r: asyncpg.Record) -> RowId:
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


def merge_blobs(groups: Sequence[Sequence[bytes]]) -> list[MergedSketches]:
    """One merge per group of rollups.sketches blobs, every group's bins merged in one pass."""
    merged: list[MergedSketches] = []
    slots: list[list[list[object]]] = []
    names: list[tuple[int, str]] = []
    for blobs in groups:
        errors: dict[str, int] = {}
        parts: dict[str, list[list[object]]] = defaultdict(list)
        for blob in blobs:
            if blob:
                raw = msgspec.msgpack.decode(blob)
                for name, encoded in raw["s"].items():
                    parts[name].append(encoded)
                for name, count in raw["e"].items():
                    errors[name] = errors.get(name, 0) + count
        for name, raws in parts.items():
            names.append((len(merged), name))
            slots.append(raws)
        merged.append(MergedSketches({}, errors))
    for (index, name), sketch in zip(names, merge_encoded_groups(slots), strict=True):
        merged[index].sketches[name] = sketch
    return merged


def _joined(parts: Sequence[MergedSketches]) -> MergedSketches:
    sketches: dict[str, list[Sketch]] = defaultdict(list)
    errors: dict[str, int] = {}
    for part in parts:
        for name, sketch in part.sketches.items():
            sketches[name].append(sketch)
        for name, count in part.score_errors.items():
            errors[name] = errors.get(name, 0) + count
    return MergedSketches({n: merge(s) for n, s in sketches.items()}, errors)


def _score_stats(sketch: Sketch | None, errors: int) -> dict[str, Any]:
    sketch = sketch or Sketch()
    median, p05, p95 = sketch.quantiles([0.5, 0.05, 0.95])
    return {
        "count": sketch.count,
        "median": median,
        "mean": sketch.mean,
        "min": sketch.low if sketch.count else None,
        "max": sketch.high if sketch.count else None,
        "p05": p05,
        "p95": p95,
        "error_count": errors,
    }


def metrics_row(version: int | str, labels: list[str], cell: Cell) -> dict[str, Any]:
    """CONTRACT's ROW for one version's merged cell."""
    empty = Sketch()
    latency = cell.sketches.get(rollup.LATENCY, empty).quantiles([0.5, 0.95, 0.99])
    names = sorted(
        {n[len(rollup.SCORE_PREFIX) :] for n in cell.sketches if n.startswith(rollup.SCORE_PREFIX)}
        | set(cell.score_errors)
    )
    return {
        "version": version,
        "labels": labels,
        "generation_count": cell.generations,
        "median_latency_ms": latency[0],
        "p95_latency_ms": latency[1],
        "p99_latency_ms": latency[2],
        "median_ttft_ms": cell.sketches.get(rollup.TTFT, empty).quantile(0.5),
        "median_input_tokens": cell.sketches.get(rollup.INPUT_TOKENS, empty).quantile(0.5),
        "median_output_tokens": cell.sketches.get(rollup.OUTPUT_TOKENS, empty).quantile(0.5),
        "total_input_tokens": cell.input_tokens,
        "total_output_tokens": cell.output_tokens,
        "median_cost": cell.sketches.get(rollup.COST, empty).quantile(0.5),
        "total_cost": cell.cost,
        "median_score": cell.sketches.get(rollup.ALL_SCORES, empty).quantile(0.5),
        "scores": {
            n: _score_stats(cell.sketches.get(rollup.score_metric(n)), cell.score_errors.get(n, 0)) for n in names
        },
        "first_generation_at": iso(cell.first_ns),
        "last_generation_at": iso(cell.last_ns),
    }


@dataclass
class _Version:
    """One version's rows of a query, split by whether their block has settled."""

    rows: list[asyncpg.Record]
    settled: Fingerprint
    recent: Fingerprint


def _split(marked: list[tuple[asyncpg.Record, tuple[int, int, RollupKey, int]]], now_minute: int) -> _Version:
    settled: list[tuple[int, int, RollupKey, int]] = []
    recent: list[tuple[int, int, RollupKey, int]] = []
    for _, mark in marked:
        ended = mark[0] + mark[1] <= now_minute - SETTLED_MINUTES
        (settled if ended else recent).append(mark)
    return _Version([r for r, _ in marked], frozenset(settled), frozenset(recent))


async def _sketches_of(conn: Conn, project: uuid.UUID, ids: list[RowId]) -> dict[RowId, bytes]:
    if not ids:
        return {}
    rows = await conn.fetch(
        _SKETCH_QUERY,
        project,
        [i[0] for i in ids],
        [i[1] for i in ids],
        [i[2].app_version for i in ids],
        [i[2].prompt_name for i in ids],
        [i[2].prompt_version for i in ids],
        [i[2].model for i in ids],
    )
    return {_row_id(r): r["sketches"] for r in rows}


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
    # one snapshot: the revisions read are those of the sketches read
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            _META_QUERY, project, [b[0] for b in blocks], [b[1] for b in blocks], prompt_name, filters.model
        )
        # (width, bucket, key, revision) of each row, built once: a 30-day query reads ~1,500 rows
        grouped: dict[Hashable, list[tuple[asyncpg.Record, tuple[int, int, RollupKey, int]]]] = defaultdict(list)
        for r in rows:
            width, bucket, app, prompt, version, model, revision = r[:7]
            key = RollupKey(app, prompt, version, model)
            if keep(key):
                grouped[getattr(key, by)].append((r, (width, bucket, key, revision)))
        now_minute = time.time_ns() // NS_PER_MINUTE
        versions = {g: _split(rs, now_minute) for g, rs in grouped.items()}
        scope = (project, by, prompt_name, filters.model, filters.label)
        out: dict[Hashable, dict[str, Any]] = {}
        missing: list[Hashable] = []
        for g, v in versions.items():
            hit = CACHE.rows.get((scope, g), v.settled | v.recent)
            if hit is not None:
                out[g] = hit
            else:
                missing.append(g)
        wanted = {
            (w, b, k)
            for g in missing
            for (w, b, k, _) in (
                versions[g].recent
                if CACHE.settled.get((scope, g), versions[g].settled)
                else versions[g].settled | versions[g].recent
            )
        }
        blobs = await _sketches_of(conn, project, sorted(wanted))
    for g in missing:
        v = versions[g]
        settled = CACHE.settled.get((scope, g), v.settled)
        if settled is None:
            settled = merge_blobs([[blobs.get((w, b, k), b"") for (w, b, k, _) in v.settled]])[0].compact()
            CACHE.settled.put((scope, g), v.settled, settled)
        recent = merge_blobs([[blobs.get((w, b, k), b"") for (w, b, k, _) in v.recent]])[0]
        cell = counters(v.rows)
        both = _joined([settled, recent])
        cell.sketches, cell.score_errors = both.sketches, both.score_errors
        row = metrics_row("", [], cell)
        CACHE.rows.put((scope, g), v.settled | v.recent, row)
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
