"""Experiments on a traffic-split label: each arm's runs and share, the sample-ratio check, the
primary metric's probability of being best and anytime-valid intervals, and guardrail comparisons.

An arm is one version of the split; its runs are the version's generations of the prompt since the
experiment started (to the minute), read from the rollups as compare reads them. A version that
also serves another label at the same time counts those runs too: give each arm a version of its
own. The statistics are services.common.statistics' (sequential.py names its methods); the
guardrails are compare's fixed-horizon tests of each arm against the control (the split's first
version, normally the incumbent), Holm-corrected.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from services.aggregator import compare
from services.aggregator.arms import VersionData, read_versions
from services.aggregator.query import Filters, iso, ns_of
from services.aggregator.store import Conn
from services.common.errors import Conflict, Invalid, NotFound
from services.common.statistics.sequential import (
    ArmMoments,
    difference_sequence,
    mean_sequence,
    probability_best,
    sample_ratio,
)
from services.common.statistics.verdicts import decide

SRM_THRESHOLD = 0.001


class ExperimentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    prompt: str
    label: str
    primary_metric: str
    guardrails: list[str] = msgspec.field(default_factory=list)
    min_samples_per_arm: int = 100


class StopIn(msgspec.Struct, forbid_unknown_fields=True):
    decision: str
    version: int | None = None


def check_metric(metric: str, field: str) -> None:
    if metric in compare.RUN_CONTINUOUS or metric == "run_error_rate":
        raise Invalid(f"{field}: {metric} is an app version's run metric; an experiment compares prompt versions")
    if not compare.is_metric(metric):
        known = ", ".join([*compare.CONTINUOUS, "error_rate", "score:<name>"])
        raise Invalid(f"{field}: {metric!r} is not a metric; choose from {known}")


async def create(pool: asyncpg.Pool, project: uuid.UUID, body: ExperimentIn) -> dict[str, Any]:
    if not body.name.strip():
        raise Invalid("name must not be empty")
    check_metric(body.primary_metric, "primary_metric")
    for metric in body.guardrails:
        check_metric(metric, "guardrails")
    if body.min_samples_per_arm < 1:
        raise Invalid("min_samples_per_arm must be at least 1")
    async with pool.acquire() as conn:
        split = await conn.fetch(
            "SELECT version, weight FROM prompt_labels WHERE project_id = $1 AND name = $2 AND label = $3 "
            "ORDER BY version",
            project,
            body.prompt,
            body.label,
        )
        if not split:
            raise NotFound(f"prompt {body.prompt!r} has no label {body.label!r}")
        if len(split) < 2:
            raise Invalid(
                f"label {body.label!r} of prompt {body.prompt!r} serves one version: split its traffic first "
                f"(PUT /api/v1/prompts/{body.prompt}/labels/{body.label})"
            )
        arms = [{"version": r["version"], "weight": r["weight"]} for r in split]
        try:
            row = await conn.fetchrow(
                "INSERT INTO experiments (project_id, name, prompt_name, label, arms, primary_metric, guardrails, "
                "min_samples_per_arm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                project,
                body.name,
                body.prompt,
                body.label,
                json.dumps(arms),
                body.primary_metric,
                body.guardrails,
                body.min_samples_per_arm,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"an experiment named {body.name!r} exists already") from None
        assert row is not None
        return await evaluate(conn, row)


async def get(pool: asyncpg.Pool, project: uuid.UUID, experiment_id: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return await evaluate(conn, await _row(conn, project, experiment_id))


async def list_all(pool: asyncpg.Pool, project: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM experiments WHERE project_id = $1 ORDER BY started_at DESC", project)
        return {"experiments": [await evaluate(conn, r) for r in rows]}


async def _row(conn: Conn, project: uuid.UUID, experiment_id: str) -> asyncpg.Record:
    try:
        key = uuid.UUID(experiment_id)
    except ValueError:
        raise NotFound(f"no experiment {experiment_id!r}") from None
    row = await conn.fetchrow("SELECT * FROM experiments WHERE project_id = $1 AND id = $2", project, key)
    if row is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    return row


async def stop(
    pool: asyncpg.Pool,
    project: uuid.UUID,
    experiment_id: str,
    body: StopIn,
    promote: Callable[[str, str, int], Awaitable[None]],
) -> dict[str, Any]:
    """Stop with a decision. A promote first moves the label (`promote(prompt, label, version)`, through
    the registry): if that fails, the experiment keeps running and the caller hears why."""
    if body.decision not in ("promote", "keep"):
        raise Invalid(f"decision must be promote or keep, got {body.decision!r}")
    async with pool.acquire() as conn:
        row = await _row(conn, project, experiment_id)
        if row["status"] != "running":
            raise Conflict(f"experiment {row['name']!r} was stopped already")
        versions = [a["version"] for a in json.loads(row["arms"])]
        version = body.version
        if body.decision == "promote":
            if version is None:
                version = (await evaluate(conn, row))["primary"].get("winner")
                if version is None:
                    raise Invalid("no arm has won yet: name the version to promote")
            if version not in versions:
                raise Invalid(f"version {version} is not an arm of this experiment ({versions})")
        decision = {"decision": body.decision, "version": version}
        if body.decision == "promote":
            assert version is not None
            await promote(row["prompt_name"], row["label"], version)
        stopped = await conn.fetchrow(
            "UPDATE experiments SET status = 'stopped', stopped_at = now(), decision = $3 "
            "WHERE project_id = $1 AND id = $2 AND status = 'running' RETURNING *",
            project,
            row["id"],
            json.dumps(decision),
        )
        if stopped is None:
            raise Conflict(f"experiment {row['name']!r} was stopped already")
        return await evaluate(conn, stopped)


def _moments(data: VersionData | None, metric: str) -> ArmMoments:
    if data is None:
        return ArmMoments(0, 0.0, 0.0)
    if metric == "error_rate":
        n = data.generations
        p = data.errors / n if n else 0.0
        return ArmMoments(n, p, (p * (1 - p)) ** 0.5)
    stored = compare.CONTINUOUS[metric][0] if metric in compare.CONTINUOUS else metric
    sample = data.sample(stored)
    if sample is None:
        return ArmMoments(0, 0.0, 0.0)
    if metric == "cost" and data.generations == sample.n and data.cost is not None:
        # exact total over the sketch's binned values: the mean cost is exact
        return ArmMoments(sample.n, data.cost / sample.n, sample.std())
    return ArmMoments(sample.n, sample.mean() or 0.0, sample.std())


def _interval(bounds: tuple[float, float]) -> list[float] | None:
    low, high = bounds
    return [low, high] if low > float("-inf") and high < float("inf") else None


async def evaluate(conn: Conn, row: asyncpg.Record) -> dict[str, Any]:
    """The EXPERIMENT body of CONTRACT's "Experiments": arms, SRM, primary and guardrails."""
    project: uuid.UUID = row["project_id"]
    arms = json.loads(row["arms"])
    versions: list[int] = [a["version"] for a in arms]
    started: datetime = row["started_at"]
    filters = Filters(start=started, end=row["stopped_at"])
    wanted: set[Hashable] = set(versions)
    data = await read_versions(conn, project, filters, row["prompt_name"], lambda _, v: v in wanted, wanted)
    kinds = await compare.score_kinds(conn, project)
    counts = [data[v].generations if v in data else 0 for v in versions]
    total = sum(counts)
    metric = row["primary_metric"]
    better = compare.direction(metric, kinds)
    moments = [_moments(data.get(v), metric) for v in versions]
    enough = all(m.n >= row["min_samples_per_arm"] for m in moments)
    control, control_moments = versions[0], moments[0]
    chances = probability_best(moments, better == "higher") if all(m.n > 1 for m in moments) else None
    winner = _winner(versions, moments, better) if enough else None
    srm_p = sample_ratio(counts, [a["weight"] for a in arms])
    primary: dict[str, Any] = {
        "metric": metric,
        "better": better,
        "control": control,
        "estimates": {str(v): (m.mean if m.n else None) for v, m in zip(versions, moments, strict=True)},
        "probability_best": (
            {str(v): p for v, p in zip(versions, chances, strict=True)} if chances is not None else None
        ),
        "sequential_ci95": {
            str(v): (_interval(mean_sequence(m)) if m.n > 1 else None) for v, m in zip(versions, moments, strict=True)
        },
        "difference_ci95": {
            str(v): (_interval(difference_sequence(control_moments, m)) if m.n > 1 and control_moments.n > 1 else None)
            for v, m in zip(versions[1:], moments[1:], strict=True)
        },
        "verdict": "not_enough_data" if not enough else ("winner" if winner is not None else "inconclusive"),
        "winner": winner,
        "method": "asymptotic confidence sequences (Waudby-Smith et al. 2021, GrowthBook), N* = 5000",
    }
    guardrails: list[dict[str, Any]] = []
    if row["guardrails"] and control in data:
        for v in versions[1:]:
            if v not in data:
                continue
            found = compare.comparisons(data[control], data[v], kinds, set(row["guardrails"]))
            guardrails.extend({**c.body(), "arm": v} for c in decide(found))
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "prompt": row["prompt_name"],
        "label": row["label"],
        "status": row["status"],
        "started_at": iso(ns_of(started)),
        "stopped_at": iso(ns_of(row["stopped_at"])) if row["stopped_at"] else None,
        "min_samples_per_arm": row["min_samples_per_arm"],
        "arms": [
            {"version": v, "weight": a["weight"], "n": n, "observed_share": (n / total if total else None)}
            for v, a, n in zip(versions, arms, counts, strict=True)
        ],
        "srm": {"p_value": srm_p, "mismatch": srm_p < SRM_THRESHOLD},
        "primary": primary,
        "guardrails": guardrails,
        "decision": json.loads(row["decision"]) if row["decision"] else None,
    }


def _winner(versions: list[int], moments: list[ArmMoments], better: str) -> int | None:
    """The arm whose anytime-valid difference from every other arm excludes 0 in its favour."""
    for i, v in enumerate(versions):
        wins = True
        for j, other in enumerate(moments):
            if i == j:
                continue
            low, high = difference_sequence(other, moments[i])  # v − other
            if not ((low > 0) if better == "higher" else (high < 0)):
                wins = False
                break
        if wins:
            return v
    return None
