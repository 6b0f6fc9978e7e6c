"""`GET /api/v1/compare?kind=app&a=&b=&dataset=NAME`: two app versions' runs of the same dataset items,
paired by item, on each run metric and score, with paired tests (services.common.statistics.paired)
and Holm's correction as every comparison has. A version that ran an item more than once counts its
latest run of it. These read the runs themselves (a dataset is thousands of items, not millions)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import numpy as np

from services.aggregator import compare
from services.aggregator.rollup import PICO, score_metric
from services.aggregator.store import Conn
from services.common.errors import Invalid, NotFound
from services.common.statistics.paired import mcnemar, wilcoxon_signed_rank
from services.common.statistics.verdicts import Arm, Comparison, decide

_LATEST = """
SELECT DISTINCT ON (d.item_id) d.item_id, d.trace_id, d.span_id, t.span_count, t.error_count, t.cost,
       coalesce(t.root_end_ns - t.root_start_ns, t.end_ns - t.start_ns) / 1e6 AS latency_ms
FROM dataset_runs d JOIN trace_runs t ON t.project_id = d.project_id AND t.trace_id = d.trace_id
WHERE d.project_id = $1 AND d.dataset = $2 AND d.app_version = $3
ORDER BY d.item_id, d.start_time DESC
"""
_SCORES = """
SELECT s.trace_id, s.name, s.value, s.data_type FROM scores s
WHERE s.project_id = $1 AND s.trace_id = ANY($2::bytea[]) AND NOT s.is_error AND s.data_type <> 3
  AND (s.span_id = '' OR s.span_id = ANY($3::bytea[]))
ORDER BY s.created_at
"""
_BOOLEAN = 2  # ScoreDataType.SCORE_DATA_TYPE_BOOLEAN


async def _runs(conn: Conn, project: uuid.UUID, dataset: str, version: str) -> dict[str, dict[str, Any]]:
    """Each item's latest run by this version: its figures and its scores by name."""
    rows = await conn.fetch(_LATEST, project, dataset, version)
    out = {
        r["item_id"]: {
            "trace": r["trace_id"],
            "run_latency_ms": r["latency_ms"],
            "run_cost": r["cost"] / PICO,
            "run_error_rate": bool(r["error_count"]),
            "scores": {},
        }
        for r in rows
    }
    by_trace = {v["trace"]: v for v in out.values()}
    for s in await conn.fetch(_SCORES, project, list(by_trace), [r["span_id"] for r in rows]):
        value = bool(s["value"]) if s["data_type"] == _BOOLEAN else s["value"]
        by_trace[s["trace_id"]]["scores"][s["name"]] = value
    return out


async def compare_by_item(
    pool: asyncpg.Pool, project: uuid.UUID, kind: str, dataset: str, a: str, b: str, alpha: float
) -> dict[str, Any]:
    if kind != "app":
        raise Invalid("compare with dataset= pairs app versions' runs: use kind=app")
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT 1 FROM datasets WHERE project_id = $1 AND name = $2", project, dataset):
            raise NotFound(f"no dataset {dataset!r}")
        runs_a, runs_b = await _runs(conn, project, dataset, a), await _runs(conn, project, dataset, b)
        kinds = await compare.score_kinds(conn, project)
    missing = [v for v, runs in ((a, runs_a), (b, runs_b)) if not runs]
    if missing:
        raise NotFound(f"version {', '.join(missing)} ran no item of dataset {dataset!r}")
    items = sorted(runs_a.keys() & runs_b.keys())
    found: list[Comparison] = []

    def add(metric: str, statistic: str, better: Any, xs: list[Any], ys: list[Any], boolean: bool) -> None:
        if not xs:
            return
        test = mcnemar(np.array(xs), np.array(ys)) if boolean else wilcoxon_signed_rank(np.array(xs), np.array(ys))
        arm = Arm(trials=len(xs))
        found.append(Comparison(metric, statistic, better, arm, arm, paired=test))

    for metric in ("run_latency_ms", "run_cost"):
        add(metric, "median", "lower", [runs_a[i][metric] for i in items], [runs_b[i][metric] for i in items], False)
    errors = ([runs_a[i]["run_error_rate"] for i in items], [runs_b[i]["run_error_rate"] for i in items])
    add("run_error_rate", "rate", "lower", *errors, True)
    names = sorted({n for i in items for n in runs_a[i]["scores"].keys() & runs_b[i]["scores"].keys()})
    for name in names:
        both = [i for i in items if name in runs_a[i]["scores"] and name in runs_b[i]["scores"]]
        xs, ys = [runs_a[i]["scores"][name] for i in both], [runs_b[i]["scores"][name] for i in both]
        boolean = all(isinstance(v, bool) for v in xs + ys)
        metric = score_metric(name)
        better = compare.direction(metric, kinds)
        add(metric, "rate" if boolean else "median", better, [float(v) for v in xs], [float(v) for v in ys], boolean)
    return {
        "kind": kind,
        "name": None,
        "dataset": dataset,
        "a": {"version": a, "n": len(runs_a), "run_count": len(runs_a)},
        "b": {"version": b, "n": len(runs_b), "run_count": len(runs_b)},
        "pairs": len(items),
        "alpha": alpha,
        "metrics": [c.body() for c in decide(found, alpha)],
    }
