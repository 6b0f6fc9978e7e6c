"""Metrics by prompt version and by app version, answered from rollups (never by scanning runs).

A range [from, to) is honoured to the minute (from rounded down, to rounded up) and covered by a
few aligned blocks per version (`rollup.cover`); their rows are merged into one cell per version
and turned into a ROW. A query reads every covered row's counters and revision (`rollup_rows`),
takes the versions whose rows all match a cached ROW from the cache, and merges all other versions
together in one pass over their rows' sketches (`version_merge.summarise_blobs`).

An app version belongs to its app: app versions are grouped by (project name, version), so two
apps' `v1` are two rows.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import asyncpg
import msgspec

from services.aggregator import rollup, rollup_rows, run_query
from services.aggregator.block_cache import BlockCache
from services.aggregator.rollup import NS_PER_MINUTE
from services.aggregator.rollup_rows import COUNTERS, Keep, Scope
from services.aggregator.store import Conn
from services.aggregator.version_merge import Merged, Summary, summarise_blobs
from services.common.errors import Invalid

CACHE = BlockCache.create()
_encode = msgspec.json.Encoder().encode
_EPOCH = datetime(1970, 1, 1)
# Metrics whose values are whole numbers: their medians and percentiles answer whole numbers too.
_WHOLE = (rollup.INPUT_TOKENS, rollup.OUTPUT_TOKENS, rollup.TOTAL_TOKENS)


@dataclass(frozen=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    label: str | None = None
    project_name: str | None = None  # only this app's versions (the resource's project_name)
    app_version: str | None = None  # only this app version's generations


def ns_of(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a time without a zone is UTC
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def iso(ns: int | None) -> str | None:
    """ISO 8601 UTC to the microsecond (`…T12:00:00.000000Z`), in integer arithmetic (strftime costs twice)."""
    if ns is None:
        return None
    return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat(timespec="microseconds") + "Z"


def moment(value: object, field: str) -> datetime | None:
    """An ISO 8601 time from a request body (a trailing Z allowed); Invalid naming the field."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{field}: not an ISO 8601 time: {value!r}") from None


def minute_range(filters: Filters) -> tuple[int | None, int | None]:
    """The filters' range in epoch minutes: from rounded down, to rounded up (None: open)."""
    start = ns_of(filters.start) // NS_PER_MINUTE if filters.start else None
    end = -(-ns_of(filters.end) // NS_PER_MINUTE) if filters.end else None
    return start, end


async def history_extent(conn: Conn, project: uuid.UUID) -> tuple[int, int] | None:
    """The first and one past the last minute of the project's rollups (its widest blocks), or None."""
    widest = rollup.LEVELS[-1]
    span = await conn.fetchrow(
        "SELECT min(bucket) AS first, max(bucket) AS last FROM rollups WHERE project_id = $1 AND width_minutes = $2",
        project,
        widest,
    )
    if span is None or span["first"] is None:
        return None
    return span["first"], span["last"] + widest


async def closed_range(conn: Conn, project: uuid.UUID, filters: Filters) -> tuple[int, int] | None:
    """The filters' range in minutes, an open bound closed by the project's history; None when empty."""
    start, end = minute_range(filters)
    if start is None or end is None:  # only an open bound needs the history's extent
        extent = await history_extent(conn, project)
        if extent is None:
            return None
        start = extent[0] if start is None else start
        end = extent[1] if end is None else end
    return (start, end) if start < end else None


async def _blocks(conn: Conn, project: uuid.UUID, filters: Filters) -> list[tuple[int, int]]:
    """The aligned blocks covering the filters' range (the project's whole history where a bound is open)."""
    found = await closed_range(conn, project, filters)
    return rollup.cover(*found) if found else []


@dataclass(frozen=True)
class Counters:
    """Exact counts, totals (costs as decimals), first and last start of a version's rows."""

    generations: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    input_cost: Decimal = Decimal(0)
    output_cost: Decimal = Decimal(0)
    first_ns: int | None = None
    last_ns: int | None = None


def counters(rows: Sequence[asyncpg.Record]) -> Counters:
    """The exact counters of a version's rows (no sketches)."""
    generations = errors = inputs = outputs = 0
    cost = input_cost = output_cost = Decimal(0)
    first_ns: int | None = None
    last_ns: int | None = None
    for r in rows:
        g, e, i, o, c, ic, oc, first, last = r[COUNTERS]
        generations += g
        errors += e
        inputs += i
        outputs += o
        cost += c
        input_cost += ic
        output_cost += oc
        if first is not None:
            first_ns = first if first_ns is None or first < first_ns else first_ns
            last_ns = last if last_ns is None or last > last_ns else last_ns
    return Counters(generations, errors, inputs, outputs, cost, input_cost, output_cost, first_ns, last_ns)


def _quantile(summary: Summary | None, q: float, whole: bool = False) -> float | int | None:
    if summary is None:
        return None
    value = summary.quantiles[q]
    return round(value) if whole else value


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


def _usd(amount: Decimal) -> float:
    """An exact decimal sum as the JSON number closest to it (3.4968375, not 3.4968374999999994)."""
    return float(amount)


def metrics_row(cell: Counters, summaries: dict[str, Summary], score_errors: dict[str, int]) -> dict[str, Any]:
    """A ROW's figures for one version: `cell`'s exact counters, and its merged metrics' summaries."""
    latency = summaries.get(rollup.LATENCY)
    cost = summaries.get(rollup.COST)
    names = sorted(
        {n[len(rollup.SCORE_PREFIX) :] for n in summaries if n.startswith(rollup.SCORE_PREFIX)} | set(score_errors)
    )
    return {
        "generation_count": cell.generations,
        "error_count": cell.errors,
        "error_rate": cell.errors / cell.generations if cell.generations else None,
        "median_latency_ms": _quantile(latency, 0.5),
        "p95_latency_ms": _quantile(latency, 0.95),
        "p99_latency_ms": _quantile(latency, 0.99),
        "mean_latency_ms": latency.mean if latency else None,
        "median_ttft_ms": _quantile(summaries.get(rollup.TTFT), 0.5),
        "median_input_tokens": _quantile(summaries.get(rollup.INPUT_TOKENS), 0.5, whole=True),
        "median_output_tokens": _quantile(summaries.get(rollup.OUTPUT_TOKENS), 0.5, whole=True),
        "median_total_tokens": _quantile(summaries.get(rollup.TOTAL_TOKENS), 0.5, whole=True),
        "total_input_tokens": cell.input_tokens,
        "total_output_tokens": cell.output_tokens,
        "total_tokens": cell.input_tokens + cell.output_tokens,
        "median_cost": _quantile(cost, 0.5),
        "mean_cost": _usd(cell.cost / cost.count) if cost else None,
        "total_cost": _usd(cell.cost),
        "total_input_cost": _usd(cell.input_cost),
        "total_output_cost": _usd(cell.output_cost),
        "median_score": _quantile(summaries.get(rollup.ALL_SCORES), 0.5),
        "scores": {n: _score_stats(summaries.get(rollup.score_metric(n)), score_errors.get(n, 0)) for n in names},
        "first_generation_at": iso(cell.first_ns),
        "last_generation_at": iso(cell.last_ns),
    }


def _scores(cell: Counters, summaries: dict[str, Summary], score_errors: dict[str, int]) -> dict[str, Any]:
    names = sorted(
        {n[len(rollup.SCORE_PREFIX) :] for n in summaries if n.startswith(rollup.SCORE_PREFIX)} | set(score_errors)
    )
    return {n: _score_stats(summaries.get(rollup.score_metric(n)), score_errors.get(n, 0)) for n in names}


def _mean_cost(cell: Counters, summaries: dict[str, Summary], _: dict[str, int]) -> float | None:
    cost = summaries.get(rollup.COST)
    return _usd(cell.cost / cost.count) if cost else None


def _median(metric: str, q: float = 0.5, whole: bool = False) -> Callable[..., float | int | None]:
    return lambda _, summaries, __: _quantile(summaries.get(metric), q, whole)


def _latency_mean(_: Counters, summaries: dict[str, Summary], __: dict[str, int]) -> float | None:
    latency = summaries.get(rollup.LATENCY)
    return latency.mean if latency else None


# Each ROW field made alone, as metrics_row makes it (tests/unit/test_query_figures.py holds them equal):
# a time series point of a few fields makes only those (a whole ROW costs ~10 µs, 14,400 points a series).
FIGURES: dict[str, Callable[[Counters, dict[str, Summary], dict[str, int]], Any]] = {
    "generation_count": lambda cell, _, __: cell.generations,
    "error_count": lambda cell, _, __: cell.errors,
    "error_rate": lambda cell, _, __: cell.errors / cell.generations if cell.generations else None,
    "median_latency_ms": _median(rollup.LATENCY),
    "p95_latency_ms": _median(rollup.LATENCY, 0.95),
    "p99_latency_ms": _median(rollup.LATENCY, 0.99),
    "mean_latency_ms": _latency_mean,
    "median_ttft_ms": _median(rollup.TTFT),
    "median_input_tokens": _median(rollup.INPUT_TOKENS, whole=True),
    "median_output_tokens": _median(rollup.OUTPUT_TOKENS, whole=True),
    "median_total_tokens": _median(rollup.TOTAL_TOKENS, whole=True),
    "total_input_tokens": lambda cell, _, __: cell.input_tokens,
    "total_output_tokens": lambda cell, _, __: cell.output_tokens,
    "total_tokens": lambda cell, _, __: cell.input_tokens + cell.output_tokens,
    "median_cost": _median(rollup.COST),
    "mean_cost": _mean_cost,
    "total_cost": lambda cell, _, __: _usd(cell.cost),
    "total_input_cost": lambda cell, _, __: _usd(cell.input_cost),
    "total_output_cost": lambda cell, _, __: _usd(cell.output_cost),
    "median_score": _median(rollup.ALL_SCORES),
    "scores": _scores,
    "first_generation_at": lambda cell, _, __: iso(cell.first_ns),
    "last_generation_at": lambda cell, _, __: iso(cell.last_ns),
}


def point_figures(
    cell: Counters, summaries: dict[str, Summary], score_errors: dict[str, int], fields: tuple[str, ...]
) -> dict[str, Any]:
    """`fields` of metrics_row(cell, summaries, score_errors), in that order: each made alone when they are
    a few (a whole ROW made once when they are most)."""
    if len(fields) > len(FIGURES) // 2:
        row = metrics_row(cell, summaries, score_errors)
        return row if fields == _ALL_FIGURES else {f: row[f] for f in fields}
    return {f: FIGURES[f](cell, summaries, score_errors) for f in fields}


_ALL_FIGURES = tuple(FIGURES)  # metrics_row's own order


async def grouped_rows(
    conn: Conn, scope: Scope, blocks: list[tuple[int, int]], keep: Keep
) -> dict[Hashable, dict[str, Any]]:
    """Each version's ROW figures over `blocks`, from the cache where its rows did not change."""
    if not blocks:
        return {}
    out: dict[Hashable, dict[str, Any]] = {}

    def uncached(g: Hashable, v: rollup_rows.Version) -> bool:
        hit = CACHE.rows.get((scope, g), v.fingerprint)
        if hit is not None:
            out[g] = hit
        return hit is None

    found = await rollup_rows.read(conn, CACHE, scope, blocks, keep, uncached)
    missing = list(found.blobs)
    merged = summarise_blobs([found.blobs[g] for g in missing])
    for g, summaries, errors in zip(missing, merged.summaries, merged.score_errors, strict=True):
        v = found.versions[g]
        row = metrics_row(counters(v.rows), summaries, errors)
        CACHE.rows.put((scope, g), v.fingerprint, row)
        out[g] = row
    return {g: row for g, row in out.items() if row["generation_count"]}


async def grouped_points(
    conn: Conn,
    scope: Scope,
    width: int,
    span: tuple[int, int],
    keep: Keep,
    fields: tuple[str, ...],
    tail: bytes = b"}",
) -> dict[Hashable, dict[int, bytes]]:
    """Each version's points over the blocks of `width` in `span` (minutes), oldest first, those with
    generations: each the JSON of {"at", and `fields` of its ROW} with `tail` in place of its closing
    brace (more fields). From the cache where none of a point's rows changed."""
    key = (scope, width, fields, tail)
    held = CACHE.points.series(key)
    found = await rollup_rows.read_points(conn, CACHE, scope, width, span, keep, held)
    missing = list(found.blobs)
    merged = summarise_blobs([found.blobs[g] for g in missing]) if missing else Merged([], [])
    made = []
    fresh: dict[Hashable, dict[int, bytes]] = {}
    for (version, bucket), summaries, errors in zip(missing, merged.summaries, merged.score_errors, strict=True):
        cell = counters(found.rows[(version, bucket)])
        point = {"at": iso(bucket * NS_PER_MINUTE), **point_figures(cell, summaries, errors, fields)}
        encoded = _encode(point)[:-1] + tail if cell.generations else b""
        made.append((version, bucket, found.points[version][bucket], encoded))
        fresh.setdefault(version, {})[bucket] = encoded
    CACHE.points.put_all(key, made)
    out: dict[Hashable, dict[int, bytes]] = {}
    for version, mine in found.points.items():
        encoded_of = found.held[version]  # (a copy of its own)
        encoded_of.update(fresh.get(version, {}))
        out[version] = {bucket: json for bucket in sorted(mine) if (json := encoded_of[bucket])}
    return {version: points for version, points in out.items() if points}


async def _grouped(
    conn: Conn, project: uuid.UUID, filters: Filters, prompt_name: str | None, by: str, keep: Keep
) -> dict[Hashable, dict[str, Any]]:
    scope = Scope(project, by, prompt_name, filters.model, filters.label, filters.project_name, filters.app_version)
    return await grouped_rows(conn, scope, await _blocks(conn, project, filters), keep)


async def labels_of(conn: Conn, project: uuid.UUID, name: str) -> dict[int, list[str]]:
    """Each version's labels now (a split label is on every version it splits to)."""
    labels: dict[int, list[str]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT version, label FROM prompt_labels WHERE project_id = $1 AND name = $2 ORDER BY label", project, name
    ):
        labels[r["version"]].append(r["label"])
    return labels


async def label_moves(conn: Conn, project: uuid.UUID, name: str, filters: Filters) -> list[dict[str, Any]]:
    """Every move of the prompt's labels in the filters' range, oldest first."""
    start, end = minute_range(filters)
    rows = await conn.fetch(
        "SELECT label, from_version, to_version, from_split, to_split, moved_by, moved_at FROM prompt_label_history "
        "WHERE project_id = $1 AND name = $2 AND ($3::timestamptz IS NULL OR moved_at >= $3) "
        "AND ($4::timestamptz IS NULL OR moved_at < $4) ORDER BY moved_at, id",
        project,
        name,
        None if start is None else _EPOCH.replace(tzinfo=UTC) + timedelta(minutes=start),
        None if end is None else _EPOCH.replace(tzinfo=UTC) + timedelta(minutes=end),
    )
    return [
        {
            "at": iso(ns_of(r["moved_at"])),
            "label": r["label"],
            "from_version": r["from_version"],
            "to_version": r["to_version"],
            "by": r["moved_by"] or None,
        }
        for r in rows
    ]


def _history_of(version: int, moves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in moves if version in (m["from_version"], m["to_version"])]


async def prompt_metrics(pool: asyncpg.Pool, project: uuid.UUID, name: str, filters: Filters) -> dict[str, Any]:
    """{"prompt": name, "versions": [ROW…]}, newest version first."""
    async with pool.acquire() as conn:
        labels = await labels_of(conn, project, name)
        labelled = {v for v, ls in labels.items() if filters.label in ls}
        cells = await _grouped(
            conn,
            project,
            filters,
            name,
            by="prompt_version",
            keep=lambda _, version: version > 0 and (filters.label is None or version in labelled),
        )
        moves = await label_moves(conn, project, name, filters) if cells else []
    versions = sorted((int(v) for v in cells), reverse=True)  # type: ignore[call-overload]
    return {
        "prompt": name,
        "versions": [
            {
                "version": v,
                "labels": labels.get(v, []),
                **cells[v],
                "label_history": _history_of(v, moves),
            }
            for v in versions
        ],
    }


async def label_keep(conn: Conn, project: uuid.UUID, label: str | None) -> Keep:
    """Which rows count when only prompt versions holding `label` now do (None: every row)."""
    if label is None:
        return None
    rows = await conn.fetch(
        "SELECT name, version FROM prompt_labels WHERE project_id = $1 AND label = $2", project, label
    )
    labelled = {(r["name"], r["version"]) for r in rows}
    return lambda name, version: (name, version) in labelled


async def version_metrics(pool: asyncpg.Pool, project: uuid.UUID, filters: Filters) -> dict[str, Any]:
    """{"versions": [ROW…]} by app version (project name, project_version_name), by name; each ROW with
    its runs' figures (run_query), and an app version with runs but no generation too."""
    async with pool.acquire() as conn:
        keep = await label_keep(conn, project, filters.label)
        blocks = await _blocks(conn, project, filters)
        scope = Scope(project, "app_version", None, filters.model, filters.label, filters.project_name)
        cells = await grouped_rows(conn, scope, blocks, keep)
        runs = {}
        if filters.model is None and filters.label is None:  # a run has no model or prompt label
            runs = await run_query.run_figures(conn, project, blocks, filters.project_name, filters.app_version)
    no_generations = metrics_row(Counters(), {}, {})
    apps = cast(list[tuple[str, str]], list(cells.keys() | runs.keys()))  # (project name, app version)
    return {
        "versions": [
            {
                "version": app_version,
                "project_name": project_name,
                **cells.get((project_name, app_version), no_generations),
                **runs.get((project_name, app_version), run_query.NO_RUNS),
            }
            for project_name, app_version in sorted(apps, key=lambda g: (g[1], g[0]))
        ]
    }
