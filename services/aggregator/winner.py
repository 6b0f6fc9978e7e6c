"""`POST /api/v1/winner`: rank versions by a weighted sum of their normalised metrics (seed 000's Choose Winner).

Future AGI's Choose Winner adds raw milliseconds to dollars to scores; here each metric is first
normalised across the candidates with its direction, so that the best candidate gets 1 and a cost
or a toxicity score ranks lower-is-better: `min_max` maps the best value to 1 and the worst to 0
(all 1 when every candidate is equal), `rank` does the same to the candidates' ranks (ties share
the mean rank). Weights are normalised to sum 1, so a score is in [0, 1]. A candidate without a
metric (no time to first token recorded) gets 0 for it.

Estimates are the versions table's figures: medians of latency, time to first token and tokens,
the median cost, rates of errors, and the mean of a score (a 1–5 rating's median hides the
difference the mean shows). The winner is clear only when the top candidate's weighted score is
above the second's and it is significantly better than the second (Holm-corrected, as compare
decides) on at least one weighted metric: a tie, or a lead the weights alone give, is no winner.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Hashable
from typing import Any

import asyncpg
import msgspec

from services.aggregator import compare, query, rollup
from services.aggregator.arms import read_versions
from services.aggregator.query import Filters
from services.common.errors import Invalid, NotFound
from services.common.statistics.verdicts import decide

_ROW_FIELD = {
    "latency_ms": "median_latency_ms",
    "ttft_ms": "median_ttft_ms",
    "input_tokens": "median_input_tokens",
    "output_tokens": "median_output_tokens",
    "total_tokens": "median_total_tokens",
    "cost": "median_cost",
    "error_rate": "error_rate",
    "run_latency_ms": "median_run_latency_ms",
    "run_cost": "median_run_cost",
    "run_error_rate": "run_error_rate",
}


class WinnerRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    weights: dict[str, float]
    name: str | None = None
    candidates: list[str | int] | None = None
    project_name: str | None = None
    model: str | None = None
    label: str | None = None
    normalisation: str = "min_max"
    alpha: float = 0.05
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None


def estimate(row: dict[str, Any], metric: str) -> float | None:
    if metric.startswith(rollup.SCORE_PREFIX):
        stats = row["scores"].get(metric[len(rollup.SCORE_PREFIX) :])
        return stats["mean"] if stats else None
    value = row.get(_ROW_FIELD[metric])
    return None if value is None else float(value)


def normalised_weights(weights: dict[str, float]) -> dict[str, float]:
    for metric, w in weights.items():
        if not compare.is_metric(metric):
            raise Invalid(f"weights.{metric}: not a metric (one of {', '.join(compare.METRICS)} or score:<name>)")
        if not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise Invalid(f"weights.{metric}: a weight is a number of at least 0, got {w!r}")
    total = sum(weights.values())
    if total <= 0:
        raise Invalid("weights: give at least one metric a weight above 0")
    return {m: w / total for m, w in weights.items() if w > 0}


def normalise(values: list[float | None], better: str, method: str) -> list[float]:
    """Each candidate's value mapped to [0, 1], the best to 1; a missing value to 0."""
    present = [v for v in values if v is not None]
    if not present:
        return [0.0 for _ in values]
    sign = 1.0 if better == "higher" else -1.0
    if method == "rank":
        ordered = sorted(sign * v for v in present)
        if len(ordered) == 1:
            return [0.0 if v is None else 1.0 for v in values]
        out = []
        for v in values:
            if v is None:
                out.append(0.0)
                continue
            below = sum(1 for o in ordered if o < sign * v)
            equal = sum(1 for o in ordered if o == sign * v)
            out.append((below + (equal - 1) / 2) / (len(ordered) - 1))
        return out
    low, high = min(present), max(present)
    if high == low:
        return [0.0 if v is None else 1.0 for v in values]
    return [0.0 if v is None else ((v - low) if better == "higher" else (high - v)) / (high - low) for v in values]


async def _rows(
    pool: asyncpg.Pool, project: uuid.UUID, request: WinnerRequest, filters: Filters
) -> list[tuple[Hashable, dict[str, Any]]]:
    """Each candidate's key (as the rollups group it) and its ROW."""
    if request.kind == "prompt":
        if not request.name:
            raise Invalid("name is required with kind=prompt")
        body = await query.prompt_metrics(pool, project, request.name, filters)
        rows: list[tuple[Hashable, dict[str, Any]]] = [(r["version"], r) for r in body["versions"]]
    elif request.kind == "app":
        body = await query.version_metrics(pool, project, filters)
        rows = [((r["project_name"], r["version"]), r) for r in body["versions"]]
    else:
        raise Invalid(f"kind must be prompt or app, got {request.kind!r}")
    if request.candidates is not None:
        wanted = {str(c) for c in request.candidates}
        rows = [(k, r) for k, r in rows if str(r["version"]) in wanted]
        unknown = wanted - {str(r["version"]) for _, r in rows}
        if unknown:
            raise NotFound(f"candidates without runs in the range: {', '.join(sorted(unknown))}")
    if not rows:
        raise NotFound("no versions with runs in the range")
    return rows


async def winner(pool: asyncpg.Pool, project: uuid.UUID, request: WinnerRequest, filters: Filters) -> dict[str, Any]:
    if request.normalisation not in ("min_max", "rank"):
        raise Invalid(f"normalisation must be min_max or rank, got {request.normalisation!r}")
    weights = normalised_weights(request.weights)
    rows = await _rows(pool, project, request, filters)
    async with pool.acquire() as conn:
        kinds = await compare.score_kinds(conn, project)
    for metric in weights:
        name = metric[len(rollup.SCORE_PREFIX) :]
        if (
            metric.startswith(rollup.SCORE_PREFIX)
            and kinds.get(name, compare.ScoreKind("", "higher")).data_type == "categorical"
        ):
            raise Invalid(f"weights.{metric}: a categorical score has no value to rank by")
    estimates = {m: [estimate(row, m) for _, row in rows] for m in weights}
    normalised = {m: normalise(vs, compare.direction(m, kinds), request.normalisation) for m, vs in estimates.items()}
    ranking = []
    for i, (key, row) in enumerate(rows):
        contributions = {m: weights[m] * normalised[m][i] for m in weights}
        entry: dict[str, Any] = {
            "version": row["version"],
            "score": sum(contributions.values()),
            "contributions": contributions,
            "metrics": {m: estimates[m][i] for m in weights},
        }
        if isinstance(key, tuple):
            entry["project_name"] = key[0]
        ranking.append((key, entry))
    ranking.sort(key=lambda pair: -pair[1]["score"])
    for rank, (_, entry) in enumerate(ranking, start=1):
        entry["rank"] = rank
    clear, reason = await _clear(pool, project, request, filters, ranking, set(weights), kinds)
    return {
        "ranking": [entry for _, entry in ranking],
        "winner": ranking[0][1]["version"] if clear else None,
        "clear": clear,
        "reason": reason,
    }


async def _clear(
    pool: asyncpg.Pool,
    project: uuid.UUID,
    request: WinnerRequest,
    filters: Filters,
    ranking: list[tuple[Hashable, dict[str, Any]]],
    weighted: set[str],
    kinds: dict[str, compare.ScoreKind],
) -> tuple[bool, str]:
    top = ranking[0][1]["version"]
    if len(ranking) == 1:
        return True, f"{top} is the only candidate with runs in the range"
    (key_a, first), (key_b, second) = ranking[0], ranking[1]
    if math.isclose(first["score"], second["score"], abs_tol=1e-9):
        return False, f"no clear winner: {first['version']} and {second['version']} tie on the weighted score"
    async with pool.acquire() as conn:
        keep = None if request.kind == "prompt" else await query.label_keep(conn, project, filters.label)
        wanted = {key_a, key_b}
        name = request.name if request.kind == "prompt" else None
        data = await read_versions(conn, project, filters, name, keep, wanted)
    # b is the top candidate: it must be significantly better than the second on a weighted metric
    # (a top that is only ever significantly worse, and ranks first by the weights alone, is no winner)
    found = decide(compare.comparisons(data[key_b], data[key_a], kinds, only=weighted), request.alpha)
    apart = [c for c in found if c.verdict == "b_better"]
    if not apart:
        return False, (
            f"no clear winner: {first['version']} is not significantly better than {second['version']} "
            f"on any weighted metric (Holm-corrected, α = {request.alpha})"
        )
    named = ", ".join(f"{c.metric} ({c.statistic}, p = {c.p_value:.3g})" for c in apart)
    return True, f"{top} ranks first and differs significantly from {second['version']} on {named}"
