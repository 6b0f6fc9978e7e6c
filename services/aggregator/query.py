"""Metrics by prompt version and by app version, answered from rollups (never by scanning runs).

A range [from, to) is honoured to the minute (from rounded down, to rounded up) and covered by a
few aligned blocks per version (`rollup.cover`); their rows are merged into one cell per version
and turned into CONTRACT's ROW. A query reads every covered row's counters and revision
(`rollup_rows`), takes the versions whose rows all match a cached ROW from the cache, and merges all
other versions together in one pass over their rows' sketches (`version_merge.summarise_blobs`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.aggregator import rollup, rollup_rows
from services.aggregator.block_cache import BlockCache
from services.aggregator.rollup import NS_PER_MINUTE, Cell
from services.aggregator.rollup_rows import COUNTERS, Keep, Scope, Version
from services.aggregator.store import Conn
from services.aggregator.version_merge import Summary, summarise_blobs

CACHE = BlockCache.create()
_EPOCH = datetime(1970, 1, 1)


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
    """ISO 8601 UTC to the microsecond (`…T12:00:00.000000Z`), in integer arithmetic (strftime costs twice)."""
    if ns is None:
        return None
    return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat(timespec="microseconds") + "Z"


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


def counters(rows: Sequence[asyncpg.Record]) -> Cell:
    """Exact counts, totals, first and last of a version's rows (no sketches)."""
    generations = errors = inputs = outputs = 0
    cost = 0.0
    first_ns: int | None = None
    last_ns: int | None = None
    for r in rows:
        g, e, i, o, c, first, last = r[COUNTERS]
        generations += g
        errors += e
        inputs += i
        outputs += o
        cost += c
        if first is not None:
            first_ns = first if first_ns is None or first < first_ns else first_ns
            last_ns = last if last_ns is None or last > last_ns else last_ns
    return Cell(generations, errors, inputs, outputs, cost, first_ns, last_ns)


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


async def _grouped(
    conn: Conn, project: uuid.UUID, filters: Filters, prompt_name: str | None, by: str, keep: Keep
) -> dict[Hashable, dict[str, Any]]:
    """Each version's ROW (without version and labels), from the cache where its rows did not change."""
    blocks = await _blocks(conn, project, filters)
    if not blocks:
        return {}
    scope = Scope(project, by, prompt_name, filters.model, filters.label)
    out: dict[Hashable, dict[str, Any]] = {}

    def uncached(g: Hashable, v: Version) -> bool:
        hit = CACHE.rows.get((scope, g), v.fingerprint)
        if hit is not None:
            out[g] = hit
        return hit is None

    found = await rollup_rows.read(conn, CACHE, scope, blocks, keep, uncached)
    missing = list(found.blobs)
    merged = summarise_blobs([found.blobs[g] for g in missing])
    for g, summaries, errors in zip(missing, merged.summaries, merged.score_errors, strict=True):
        v = found.versions[g]
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
            keep=lambda _, version: version > 0 and (filters.label is None or version in labelled),
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
            keep=None if filters.label is None else lambda name, version: (name, version) in labelled,
        )
    return {"versions": [{**cells[v], "version": str(v)} for v in sorted(cells, key=str)]}
