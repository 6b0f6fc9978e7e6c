"""Time series by prompt version and by app version: a ROW per version per interval, and the
deployments (label moves, or each app version's first run) as markers.

Every interval is a rollup level (1, 5, 15 minutes; 1, 6 hours; a day), so each point is exactly
one block of that level: a series reads the level's rows over the range, grouped by (version,
block), and every point's figures come from the same merge as a metrics query's ROW. Points of
the whole range therefore sum to the range's ROW (counts and totals exactly).

A 30-day hourly series of 20 versions is 14,400 points (15 MB of JSON with every field): each point
is held as the JSON it is sent as, valid for its rows' revisions (`query.grouped_points`,
`BlockCache.points`), so an answer is one read of the rows' revisions, the few points whose rows
changed made again, and the points joined into each version's array (`msgspec.Raw`).
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from typing import Any, cast

import asyncpg
import msgspec

from services.aggregator import query, rollup, run_query
from services.aggregator.query import Filters, grouped_points, iso
from services.aggregator.rollup import NS_PER_MINUTE
from services.aggregator.rollup_rows import Keep, Scope
from services.aggregator.store import Conn
from services.common.errors import Invalid

_encode = msgspec.json.Encoder().encode
INTERVALS = {"minute": 1, "5m": 5, "15m": 15, "hour": 60, "6h": 360, "day": 1440}
MAX_POINTS = 300  # the finest interval that gives at most this many points, when none is asked for
# Field names a point may hold (`metrics=`): every ROW figure but the version's own identity.
POINT_FIELDS = (
    "generation_count",
    "error_count",
    "error_rate",
    "median_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "mean_latency_ms",
    "median_ttft_ms",
    "median_input_tokens",
    "median_output_tokens",
    "median_total_tokens",
    "total_input_tokens",
    "total_output_tokens",
    "total_tokens",
    "median_cost",
    "mean_cost",
    "total_cost",
    "total_input_cost",
    "total_output_cost",
    "median_score",
    "scores",
    "first_generation_at",
    "last_generation_at",
)


APP_POINT_FIELDS = POINT_FIELDS + run_query.RUN_FIELDS


def parse_fields(metrics: str | None, allowed: tuple[str, ...] = POINT_FIELDS) -> tuple[str, ...]:
    """`metrics=a,b` as ROW field names; all of them when absent. A name that is not one is refused."""
    if not metrics:
        return allowed
    asked = tuple(dict.fromkeys(m.strip() for m in metrics.split(",") if m.strip()))
    unknown = [m for m in asked if m not in allowed]
    if unknown:
        raise Invalid(f"metrics: {', '.join(unknown)} not ROW fields here; choose from {', '.join(allowed)}")
    return asked


def choose_interval(asked: str | None, start: int, end: int) -> str:
    """The asked interval, or the finest that covers [start, end) minutes in at most MAX_POINTS points."""
    if asked is not None:
        if asked not in INTERVALS:
            raise Invalid(f"interval must be one of {', '.join(INTERVALS)}, not {asked!r}")
        return asked
    for name, width in INTERVALS.items():
        if -(-(end - start) // width) <= MAX_POINTS:
            return name
    return "day"


async def _points(
    conn: Conn, scope: Scope, start: int, end: int, width: int, fields: tuple[str, ...], keep: Keep
) -> dict[Hashable, msgspec.Raw]:
    """Each version's points (those with generations or, for app versions, runs), oldest first, as the
    JSON array they are sent as: the points come encoded, from the cache (`query.grouped_points`)."""
    generation_fields = tuple(f for f in fields if f not in run_query.RUN_FIELDS)
    run_fields = tuple(f for f in fields if f in run_query.RUN_FIELDS)
    # a point's run fields close its JSON object where they come after the others (as by default): each
    # point is held with them null (no runs), and the few points with runs have their figures put there
    spliced = bool(run_fields) and generation_fields + run_fields == fields
    tail = b"," + _encode(dict.fromkeys(run_fields))[1:] if spliced else b"}"
    found = await grouped_points(conn, scope, width, (start, end), keep, generation_fields, tail)
    runs: dict[tuple[Hashable, int], bytes] = {}
    if run_fields and scope.model is None and scope.label is None:
        runs = await run_query.series_points(conn, scope.project, width, (start, end), scope.project_name, run_fields)
    empty = query.metrics_row(query.Counters(), {}, {})
    added: set[Hashable] = set()  # versions with a point of runs but no generations
    for version, bucket in runs:
        points = found.setdefault(version, {})
        if bucket not in points:
            at = iso(bucket * NS_PER_MINUTE)
            points[bucket] = _encode({"at": at, **{f: empty[f] for f in generation_fields}})[:-1] + tail
            added.add(version)
    if spliced:
        for (version, bucket), figures in runs.items():
            point = found[version][bucket]
            found[version][bucket] = point[: -len(tail)] + b"," + figures[1:]
    elif run_fields:  # the fields in their asked order: each point made again
        for version, points in found.items():
            for bucket, point in points.items():
                merged = {**msgspec.json.decode(point), **run_query.NO_RUNS}
                held = runs.get((version, bucket))
                if held is not None:
                    merged.update(msgspec.json.decode(held))
                points[bucket] = _encode({"at": merged["at"], **{f: merged[f] for f in fields}})
    for version in added:
        found[version] = dict(sorted(found[version].items()))
    return {v: msgspec.Raw(b"[" + b",".join(points.values()) + b"]") for v, points in found.items()}


async def _aligned(
    conn: Conn, project: uuid.UUID, filters: Filters, interval: str | None
) -> tuple[str, int, int] | None:
    found = await query.closed_range(conn, project, filters)
    if found is None:
        return None
    start, end = found
    name = choose_interval(interval, start, end)
    width = INTERVALS[name]
    return name, start - start % width, -(-end // width) * width


async def prompt_series(
    pool: asyncpg.Pool, project: uuid.UUID, name: str, filters: Filters, interval: str | None, metrics: str | None
) -> dict[str, Any]:
    """{"interval", "series": [{"version", "points"}], "markers": [label moves]} for one prompt."""
    fields = parse_fields(metrics)
    async with pool.acquire() as conn:
        aligned = await _aligned(conn, project, filters, interval)
        if aligned is None:
            return {"interval": choose_interval(interval, 0, 1), "series": [], "markers": []}
        chosen, start, end = aligned
        labels = await query.labels_of(conn, project, name)
        labelled = {v for v, ls in labels.items() if filters.label in ls}
        scope = Scope(project, "prompt_version", name, filters.model, filters.label)

        def keep(_: str, version: int) -> bool:
            return version > 0 and (filters.label is None or version in labelled)

        series = await _points(conn, scope, start, end, INTERVALS[chosen], fields, keep)
        moves = await query.label_moves(conn, project, name, filters)
    return {
        "interval": chosen,
        "series": [{"version": v, "points": series[v]} for v in sorted(series, reverse=True)],  # type: ignore[type-var]
        "markers": [
            {"at": m["at"], "label": m["label"], "from_version": m["from_version"], "to_version": m["to_version"]}
            for m in moves
        ],
    }


async def version_series(
    pool: asyncpg.Pool, project: uuid.UUID, filters: Filters, interval: str | None, metrics: str | None
) -> dict[str, Any]:
    """{"interval", "series": [{"version", "project_name", "points"}], "markers": [first runs]} by app version."""
    fields = parse_fields(metrics, APP_POINT_FIELDS)
    async with pool.acquire() as conn:
        aligned = await _aligned(conn, project, filters, interval)
        if aligned is None:
            return {"interval": choose_interval(interval, 0, 1), "series": [], "markers": []}
        chosen, start, end = aligned
        keep = await query.label_keep(conn, project, filters.label)
        scope = Scope(project, "app_version", None, filters.model, filters.label, filters.project_name)
        series = await _points(conn, scope, start, end, INTERVALS[chosen], fields, keep)
        markers = await first_runs(conn, project, filters.project_name, start, end)
    apps = cast(list[tuple[str, str]], list(series))  # (project name, app version)
    return {
        "interval": chosen,
        "series": [
            {"version": a, "project_name": p, "points": series[(p, a)]}
            for p, a in sorted(apps, key=lambda g: (g[1], g[0]))
        ],
        "markers": markers,
    }


async def first_runs(
    conn: Conn, project: uuid.UUID, project_name: str | None, start: int, end: int
) -> list[dict[str, Any]]:
    """Each app version's first generation in [start, end) minutes, as a deployment marker: from the
    app's version first seen before it (None for the first), to this one."""
    rows = await conn.fetch(
        "SELECT project_name, app_version, min(first_ns) AS first_ns FROM rollups "
        "WHERE project_id = $1 AND width_minutes = $2 AND ($3::text IS NULL OR project_name = $3) "
        "AND first_ns IS NOT NULL GROUP BY project_name, app_version ORDER BY first_ns",
        project,
        rollup.LEVELS[-1],
        project_name,
    )
    markers: list[dict[str, Any]] = []
    before: dict[str, str] = {}
    for r in rows:
        app = r["project_name"]
        if start * NS_PER_MINUTE <= r["first_ns"] < end * NS_PER_MINUTE:
            markers.append(
                {
                    "at": iso(r["first_ns"]),
                    "label": None,
                    "project_name": app,
                    "from_version": before.get(app),
                    "to_version": r["app_version"],
                }
            )
        before[app] = r["app_version"]
    return markers
