"""Runs' figures by app version, from run rollups: what ROW's run fields say.

A run is a trace (runs.py), so it has no model or prompt version: with `model=` or `label=` the run
fields are null. Blocks are the same as a metrics query's (one per point in a time series).
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from decimal import Decimal
from typing import Any

from services.aggregator.runs import RUN_COST, RUN_LATENCY
from services.aggregator.store import Conn
from services.aggregator.version_merge import summarise_blobs

_ROWS = """
SELECT r.bucket, r.project_name, r.app_version, r.run_count, r.error_count, r.cost, r.sketches
FROM run_rollups r
JOIN unnest($2::int[], $3::bigint[]) AS b(w, k) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1 AND ($4::text IS NULL OR r.project_name = $4) AND ($5::text IS NULL OR r.app_version = $5)
"""
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
    per_block: bool = False,
) -> dict[Hashable, dict[str, Any]]:
    """The run fields of each (project name, app version) over `blocks` (of each ((name, version),
    bucket) with `per_block`), for the versions with runs."""
    if not blocks:
        return {}
    rows = await conn.fetch(_ROWS, project, [b[0] for b in blocks], [b[1] for b in blocks], project_name, app_version)
    groups: dict[Hashable, list[Any]] = {}
    for r in rows:
        app = (r["project_name"], r["app_version"])
        groups.setdefault((app, r["bucket"]) if per_block else app, []).append(r)
    keys = list(groups)
    merged = summarise_blobs([[r["sketches"] for r in groups[g]] for g in keys])
    out: dict[Hashable, dict[str, Any]] = {}
    for g, summaries in zip(keys, merged.summaries, strict=True):
        runs = sum(r["run_count"] for r in groups[g])
        if runs <= 0:
            continue
        errors = sum(r["error_count"] for r in groups[g])
        cost = sum((r["cost"] for r in groups[g]), Decimal(0))
        latency, costs = summaries.get(RUN_LATENCY), summaries.get(RUN_COST)
        out[g] = {
            "run_count": runs,
            "mean_run_latency_ms": latency.mean if latency else None,
            "median_run_latency_ms": latency.quantiles[0.5] if latency else None,
            "p95_run_latency_ms": latency.quantiles[0.95] if latency else None,
            "mean_run_cost": float(cost / runs),
            "median_run_cost": costs.quantiles[0.5] if costs else None,
            "run_error_rate": errors / runs,
        }
    return out
