"""Runs' figures by app version, from run rollups: what ROW's run fields say.

A run is a trace (runs.py), so it has no model or prompt version: with `model=` or `label=` the run
fields are null. Blocks are the same as a metrics query's (one per point in a time series).
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from decimal import Decimal
from typing import Any, cast

import msgspec

from services.aggregator.block_cache import SeriesPoints
from services.aggregator.runs import RUN_COST, RUN_LATENCY
from services.aggregator.store import Conn
from services.aggregator.version_merge import Summary, summarise_blobs

_ROWS = """
SELECT r.bucket, r.project_name, r.app_version, r.run_count, r.error_count, r.cost, r.sketches
FROM run_rollups r
JOIN unnest($2::int[], $3::bigint[]) AS b(w, k) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1 AND ($4::text IS NULL OR r.project_name = $4) AND ($5::text IS NULL OR r.app_version = $5)
"""
# A series' run rows (one per point) with their revisions; the sketches of those not held at that revision.
_SERIES_ROWS = """
SELECT r.bucket, r.project_name, r.app_version, r.xmin::text::bigint AS revision, r.run_count, r.error_count, r.cost,
       h.revision IS NOT DISTINCT FROM r.xmin::text::bigint AS held,
       CASE WHEN h.revision IS DISTINCT FROM r.xmin::text::bigint THEN r.sketches END AS sketches
FROM run_rollups r
LEFT JOIN unnest($5::bigint[], $6::text[], $7::text[], $8::bigint[]) AS h(k, p, a, revision)
  ON r.bucket = h.k AND r.project_name = h.p AND r.app_version = h.a
WHERE r.project_id = $1 AND r.width_minutes = $2 AND r.bucket >= $3 AND r.bucket < $4
  AND ($9::text IS NULL OR r.project_name = $9)
"""
# Series points' run fields as JSON, by (project, width, app, fields), app version and bucket: ~8 MB (their
# JSON, ~150 bytes, and ~400 bytes held each) hold every point of a few 30-day hourly series of 20 versions.
SERIES = SeriesPoints(16 * 1024**2)
_encode = msgspec.json.Encoder().encode
RUN_FIELDS = (
    "run_count",
    "mean_run_latency_ms",
    "median_run_latency_ms",
    "p95_run_latency_ms",
    "mean_run_cost",
    "median_run_cost",
    "run_error_rate",
)
NO_RUNS: dict[str, Any] = dict.fromkeys(RUN_FIELDS)


async def run_figures(
    conn: Conn,
    project: uuid.UUID,
    blocks: list[tuple[int, int]],
    project_name: str | None = None,
    app_version: str | None = None,
) -> dict[Hashable, dict[str, Any]]:
    """The run fields of each (project name, app version) over `blocks`, for the versions with runs (a
    time series' points: `series_points`)."""
    if not blocks:
        return {}
    rows = await conn.fetch(_ROWS, project, [b[0] for b in blocks], [b[1] for b in blocks], project_name, app_version)
    groups: dict[Hashable, list[Any]] = {}
    for r in rows:
        app = (r["project_name"], r["app_version"])
        groups.setdefault(app, []).append(r)
    keys = list(groups)
    merged = summarise_blobs([[r["sketches"] for r in groups[g]] for g in keys])
    out: dict[Hashable, dict[str, Any]] = {}
    for g, summaries in zip(keys, merged.summaries, strict=True):
        figures = _figures(groups[g], summaries)
        if figures is not None:
            out[g] = figures
    return out


def _figures(rows: list[Any], summaries: dict[str, Summary]) -> dict[str, Any] | None:
    """The run fields of `rows` (summarised as `summaries`); None without runs."""
    runs = sum(r["run_count"] for r in rows)
    if runs <= 0:
        return None
    errors = sum(r["error_count"] for r in rows)
    cost = sum((r["cost"] for r in rows), Decimal(0))
    latency, costs = summaries.get(RUN_LATENCY), summaries.get(RUN_COST)
    return {
        "run_count": runs,
        "mean_run_latency_ms": latency.mean if latency else None,
        "median_run_latency_ms": latency.quantiles[0.5] if latency else None,
        "p95_run_latency_ms": latency.quantiles[0.95] if latency else None,
        "mean_run_cost": float(cost / runs),
        "median_run_cost": costs.quantiles[0.5] if costs else None,
        "run_error_rate": errors / runs,
    }


async def series_points(
    conn: Conn,
    project: uuid.UUID,
    width: int,
    span: tuple[int, int],
    project_name: str | None,
    fields: tuple[str, ...],
) -> dict[tuple[Hashable, int], bytes]:
    """The JSON object of `fields` of each ((project name, app version), bucket) with runs over the blocks of
    `width` in `span` (minutes): a point is one run rollup row, made again only when its revision changed."""
    key = (project.int, width, project_name, fields)
    held = SERIES.series(key)
    columns: tuple[list[int], list[str], list[str], list[int]] = ([], [], [], [])
    sent = {version: encoded.copy() for version, (_, encoded) in held.items()}  # others may change the cache
    for version, (revisions, _) in held.items():
        name, app = cast(tuple[str, str], version)
        for bucket, revision in revisions.items():
            if span[0] <= bucket < span[1]:
                columns[0].append(bucket)
                columns[1].append(name)
                columns[2].append(app)
                columns[3].append(cast(int, revision))
    rows = await conn.fetch(_SERIES_ROWS, project, width, *span, *columns, project_name)
    out: dict[tuple[Hashable, int], bytes] = {}
    made = []
    for r in rows:
        if r["held"]:
            version = (r["project_name"], r["app_version"])
            out[(version, r["bucket"])] = sent[version][r["bucket"]]
        else:
            made.append(r)
    merged = summarise_blobs([[r["sketches"]] for r in made])
    for r, summaries in zip(made, merged.summaries, strict=True):
        figures = _figures([r], summaries)
        encoded = b"" if figures is None else _encode({f: figures[f] for f in fields})
        version = (r["project_name"], r["app_version"])
        SERIES.put(key, version, r["bucket"], r["revision"], encoded)
        out[(version, r["bucket"])] = encoded
    return {point: encoded for point, encoded in out.items() if encoded}
