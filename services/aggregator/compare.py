"""`GET /api/v1/compare`: version b against version a on every metric, with statistics.

Each METRIC gives one COMPARISON per statistic: latency the median and p95, error rates and boolean
scores their rate, categorical scores their distribution, the rest their median; app versions add
their runs' latency, cost and error rate. The statistics (services.common.statistics) read only the
rollups' bins and counters, so a comparison costs the same at a thousand runs or a million.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.aggregator import query, rollup
from services.aggregator.arms import VersionData, read_versions
from services.aggregator.query import Filters
from services.aggregator.runs import RUN_COST, RUN_LATENCY
from services.aggregator.store import Conn
from services.common.errors import Invalid, NotFound
from services.common.statistics.verdicts import Arm, Better, Comparison, decide

# METRIC → (rollup metric, statistics), in the order a COMPARISON list shows them.
CONTINUOUS: dict[str, tuple[str, tuple[str, ...]]] = {
    "latency_ms": (rollup.LATENCY, ("median", "p95")),
    "ttft_ms": (rollup.TTFT, ("median",)),
    "input_tokens": (rollup.INPUT_TOKENS, ("median",)),
    "output_tokens": (rollup.OUTPUT_TOKENS, ("median",)),
    "total_tokens": (rollup.TOTAL_TOKENS, ("median",)),
    "cost": (rollup.COST, ("median",)),
}
RUN_CONTINUOUS: dict[str, tuple[str, tuple[str, ...]]] = {
    "run_latency_ms": (RUN_LATENCY, ("median", "p95")),
    "run_cost": (RUN_COST, ("median",)),
}
RATES = ("error_rate", "run_error_rate")
METRICS = (*CONTINUOUS, *RUN_CONTINUOUS, *RATES)


@dataclass(frozen=True)
class ScoreKind:
    data_type: str  # "numeric", "boolean" or "categorical"
    better: Better


async def score_kinds(conn: Conn, project: uuid.UUID) -> dict[str, ScoreKind]:
    """Each configured score's type and direction (POST /api/v1/score-configs)."""
    rows = await conn.fetch("SELECT name, data_type, direction FROM score_configs WHERE project_id = $1", project)
    return {r["name"]: ScoreKind(r["data_type"], r["direction"]) for r in rows}


def is_metric(name: str) -> bool:
    return name in METRICS or (name.startswith(rollup.SCORE_PREFIX) and len(name) > len(rollup.SCORE_PREFIX))


def direction(metric: str, kinds: dict[str, ScoreKind]) -> Better:
    """Lower is better for all but scores; a score is better higher unless its config says lower."""
    if metric.startswith(rollup.SCORE_PREFIX):
        kind = kinds.get(metric[len(rollup.SCORE_PREFIX) :])
        return kind.better if kind else "higher"
    return "lower"


def score_kind(name: str, a: VersionData, b: VersionData, kinds: dict[str, ScoreKind]) -> str:
    """A score's type: its config's, else what its values show (only 0 and 1: boolean)."""
    if name in kinds:
        return kinds[name].data_type
    metric = rollup.score_metric(name)
    if metric not in a.sketches and metric not in b.sketches and (name in a.categories or name in b.categories):
        return "categorical"
    samples = [s for s in (a.sample(metric), b.sample(metric)) if s is not None]
    if samples and all(set(s.values.tolist()) <= {0.0, 1.0} for s in samples):
        return "boolean"
    return "numeric"


def comparisons(
    a: VersionData, b: VersionData, kinds: dict[str, ScoreKind], only: set[str] | None = None
) -> list[Comparison]:
    """Unmeasured comparisons of every metric a or b has (those in `only`, when given)."""
    out: list[Comparison] = []

    def wanted(metric: str) -> bool:
        return only is None or metric in only

    for metric, (stored, statistics) in (CONTINUOUS | RUN_CONTINUOUS).items():
        if wanted(metric) and (a.sample(stored) or b.sample(stored)):
            for statistic in statistics:
                out.append(Comparison(metric, statistic, "lower", Arm(a.sample(stored)), Arm(b.sample(stored))))
    if wanted("error_rate") and (a.generations or b.generations):
        out.append(
            Comparison(
                "error_rate",
                "rate",
                "lower",
                Arm(successes=a.errors, trials=a.generations),
                Arm(successes=b.errors, trials=b.generations),
            )
        )
    if wanted("run_error_rate") and (a.runs or b.runs):
        out.append(
            Comparison(
                "run_error_rate",
                "rate",
                "lower",
                Arm(successes=a.run_errors, trials=a.runs),
                Arm(successes=b.run_errors, trials=b.runs),
            )
        )
    names = {
        m[len(rollup.SCORE_PREFIX) :]
        for m in a.sketches.keys() | b.sketches.keys()
        if m.startswith(rollup.SCORE_PREFIX)
    }
    for name in sorted(names | a.categories.keys() | b.categories.keys()):
        metric = rollup.score_metric(name)
        if not wanted(metric):
            continue
        better = direction(metric, kinds)
        kind = score_kind(name, a, b, kinds)
        if kind == "categorical":
            arms = (Arm(categories=a.categories.get(name, {})), Arm(categories=b.categories.get(name, {})))
            out.append(Comparison(metric, "distribution", better, *arms))
        elif kind == "boolean":
            out.append(Comparison(metric, "rate", better, _rate_arm(a, metric), _rate_arm(b, metric)))
        else:
            out.append(Comparison(metric, "median", better, Arm(a.sample(metric)), Arm(b.sample(metric))))
    return out


def _rate_arm(data: VersionData, metric: str) -> Arm:
    sample = data.sample(metric)
    if sample is None:
        return Arm()
    return Arm(successes=int(sample.counts[sample.values != 0].sum()), trials=sample.n)


async def resolve_app_version(
    conn: Conn, project: uuid.UUID, version: str, project_name: str | None
) -> tuple[str, str]:
    """(project name, version) of an app version; 400 when two apps have a version of that name."""
    if project_name is not None:
        return project_name, version
    rows = await conn.fetch(
        "SELECT DISTINCT project_name FROM rollups WHERE project_id = $1 AND app_version = $2 AND width_minutes = $3",
        project,
        version,
        rollup.LEVELS[-1],
    )
    apps = sorted(r["project_name"] for r in rows)
    if len(apps) > 1:
        raise Invalid(f"app version {version!r} belongs to several apps ({', '.join(apps)}): pass project_name=")
    return (apps[0] if apps else ""), version


def _prompt_version(value: str, field: str) -> int:
    try:
        version = int(value)
    except ValueError:
        raise Invalid(f"{field} must be a prompt version number, got {value!r}") from None
    if version < 1:
        raise Invalid(f"{field} must be a prompt version number (1 or more), got {version}")
    return version


async def arms(
    conn: Conn, project: uuid.UUID, kind: str, name: str | None, versions: list[str], filters: Filters
) -> tuple[list[Hashable], dict[Hashable, VersionData]]:
    """The versions' keys as the rollups group them, and their data."""
    if kind == "prompt":
        if not name:
            raise Invalid("name is required with kind=prompt")
        keys: list[Hashable] = [_prompt_version(v, f) for v, f in zip(versions, ("a", "b"), strict=False)]
        wanted = set(keys)
        data = await read_versions(conn, project, filters, name, lambda _, v: v in wanted, wanted)
        return keys, data
    if kind != "app":
        raise Invalid(f"kind must be prompt or app, got {kind!r}")
    keys = [await resolve_app_version(conn, project, v, filters.project_name) for v in versions]
    keep = await query.label_keep(conn, project, filters.label)
    return keys, await read_versions(conn, project, filters, None, keep, set(keys))


async def compare(
    pool: asyncpg.Pool,
    project: uuid.UUID,
    kind: str,
    name: str | None,
    a: str,
    b: str,
    filters: Filters,
    alpha: float,
    only: set[str] | None = None,
) -> dict[str, Any]:
    """b against a on every metric (those in `only`, when given), Holm-corrected across them."""
    if not 0 < alpha < 1:
        raise Invalid(f"alpha must be between 0 and 1, got {alpha}")
    async with pool.acquire() as conn:
        (key_a, key_b), data = await arms(conn, project, kind, name, [a, b], filters)
        kinds = await score_kinds(conn, project)
    missing = [v for v, key in ((a, key_a), (b, key_b)) if key not in data]
    if missing:
        raise NotFound(f"no runs of version {', '.join(missing)} in the range")
    found = decide(comparisons(data[key_a], data[key_b], kinds, only), alpha)
    return {
        "kind": kind,
        "name": name,
        "a": _side(key_a, data[key_a]),
        "b": _side(key_b, data[key_b]),
        "alpha": alpha,
        "metrics": [c.body() for c in found],
    }


def _side(key: Hashable, data: VersionData) -> dict[str, Any]:
    if isinstance(key, tuple):
        return {"version": key[1], "project_name": key[0], "n": data.generations, "run_count": data.runs}
    return {"version": key, "n": data.generations}
