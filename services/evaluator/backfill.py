"""Scores stored runs after the fact (`vane eval run`), so that an older version gets the same scores
as a new one. Reads the aggregator's runs table (read-only), evaluates like the live path, records
in the same ledger (a second run skips what is done) and publishes to the scores stream.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from services.common.bus import Bus
from services.common.catalogue import CATALOGUE, EvaluatorSpec
from services.common.errors import Invalid, NotFound
from services.evaluator import records
from services.evaluator.evaluate import Evaluators
from services.evaluator.outcomes import JudgeUnavailable
from services.evaluator.project_rules import validate
from services.evaluator.publish import publish_scores
from services.evaluator.records import Evaluation
from services.evaluator.selection import Planned, ProjectRule, bind, matches, sampled
from services.evaluator.spans import SpanView

PAGE = 500


@dataclass(frozen=True)
class Target:
    """What to score with: a project rule (its evaluator, mapping, config, filter and sampling) or a
    catalogue evaluator with the mapping and config given on the command line."""

    name: str
    spec: EvaluatorSpec
    mapping: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    span_filter: dict[str, Any] = field(default_factory=dict)
    sampling_rate: float = 1.0
    rule_id: uuid.UUID | None = None


@dataclass(frozen=True)
class RunSelection:
    project_id: uuid.UUID
    app_version: str
    prompt_name: str | None = None
    prompt_version: int | None = None
    since: datetime | None = None
    span_kind: str | None = None  # None: generations only


@dataclass
class Summary:
    runs: int = 0
    scored: int = 0
    errors: int = 0
    already_done: int = 0
    not_selected: int = 0
    judge_unavailable: int = 0  # not recorded: a later run tries them again


async def find_project(pool: asyncpg.Pool, name_or_id: str) -> uuid.UUID:
    try:
        row = await pool.fetchrow("SELECT id FROM projects WHERE id = $1", uuid.UUID(name_or_id))
    except ValueError:
        row = await pool.fetchrow("SELECT id FROM projects WHERE name = $1", name_or_id)
    if row is None:
        raise NotFound(f"no project {name_or_id!r}")
    return uuid.UUID(str(row["id"]))


async def find_target(
    pool: asyncpg.Pool, project_id: uuid.UUID, evaluator: str, mapping: dict[str, str], config: dict[str, Any]
) -> Target:
    """The project's rule named `evaluator` if there is one, else the catalogue evaluator of that name."""
    row = await pool.fetchrow(
        "SELECT id, name, evaluator, filter, mapping, sampling_rate, config FROM evaluator_rules "
        "WHERE project_id = $1 AND name = $2",
        project_id,
        evaluator,
    )
    if row is not None:
        rule = ProjectRule(
            row["id"],
            row["name"],
            row["evaluator"],
            json.loads(row["filter"]),
            json.loads(row["mapping"]),
            row["sampling_rate"],
            {**json.loads(row["config"]), **config},
        )
        spec = CATALOGUE[rule.evaluator]
        return Target(rule.name, spec, {**rule.mapping, **mapping}, dict(rule.config), dict(rule.filter),
                      rule.sampling_rate, rule.id)  # fmt: skip
    if evaluator not in CATALOGUE:
        raise Invalid(f"{evaluator!r} is neither a rule of this project nor an evaluator in the catalogue")
    checked = validate({"evaluator": evaluator, "mapping": mapping, "config": config})
    return Target(checked["name"], CATALOGUE[evaluator], checked["mapping"], checked["config"])


def _where(selection: RunSelection) -> tuple[str, list[Any]]:
    clauses = ["project_id = $1", "app_version = $2"]
    args: list[Any] = [selection.project_id, selection.app_version]
    for column, value in (
        ("prompt_name", selection.prompt_name),
        ("prompt_version", selection.prompt_version),
        ("kind", selection.span_kind),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if selection.since is not None:
        args.append(selection.since)
        clauses.append(f"start_time >= ${len(args)}")
    if selection.span_kind is None:
        clauses.append("is_generation")
    return " AND ".join(clauses), args


async def count_runs(pool: asyncpg.Pool, selection: RunSelection) -> int:
    where, args = _where(selection)
    return int(await pool.fetchval(f"SELECT count(*) FROM runs WHERE {where}", *args))


async def _pages(pool: asyncpg.Pool, selection: RunSelection) -> Any:
    where, args = _where(selection)
    after: tuple[Any, ...] | None = None
    while True:
        keyset = ""
        page_args = list(args)
        if after is not None:
            page_args.extend(after)
            n = len(args)
            keyset = f" AND (start_time, trace_id, span_id) > (${n + 1}, ${n + 2}, ${n + 3})"
        rows = await pool.fetch(
            "SELECT start_time, trace_id, span_id, kind, app_version, prompt_name, prompt_version, prompt_label, "
            f"model, input, output, attributes_json FROM runs WHERE {where}{keyset} "
            f"ORDER BY start_time, trace_id, span_id LIMIT {PAGE}",
            *page_args,
        )
        if not rows:
            return
        yield [_span(selection.project_id, row) for row in rows]
        last = rows[-1]
        after = (last["start_time"], last["trace_id"], last["span_id"])


def _span(project_id: uuid.UUID, row: asyncpg.Record) -> SpanView:
    try:
        attributes = json.loads(row["attributes_json"]) if row["attributes_json"] else {}
    except ValueError:
        attributes = {}
    return SpanView(
        project_id=str(project_id),
        trace_id=bytes(row["trace_id"]),
        span_id=bytes(row["span_id"]),
        kind=row["kind"],
        app_version=row["app_version"],
        prompt_name=row["prompt_name"],
        prompt_version=row["prompt_version"],
        prompt_label=row["prompt_label"],
        model=row["model"],
        input=row["input"],
        output=row["output"],
        attributes=attributes if isinstance(attributes, dict) else {},
    )


async def backfill(
    pool: asyncpg.Pool,
    bus: Bus,
    evaluators: Evaluators,
    target: Target,
    selection: RunSelection,
    progress: Callable[[int], None] = lambda _: None,
    concurrency: int = 64,
) -> Summary:
    """Score every selected run with the target; report each page's size to `progress`."""
    summary = Summary()
    slots = asyncio.Semaphore(concurrency)

    async def evaluate(span: SpanView, planned: Planned) -> Evaluation | None:
        async with slots:
            try:
                outcome = await evaluators.run(span.project_id, planned)
            except JudgeUnavailable:
                summary.judge_unavailable += 1
                return None
        return Evaluation.of(span, planned, outcome)

    async for spans in _pages(pool, selection):
        summary.runs += len(spans)
        salt = str(target.rule_id) if target.rule_id else f"backfill:{target.name}"
        chosen = [s for s in spans if matches(target.span_filter, s) and sampled(s, salt, target.sampling_rate)]
        summary.not_selected += len(spans) - len(chosen)
        plans = [
            (s, bind(s, target.name, target.spec, target.mapping, target.config, "backfill", target.rule_id))
            for s in chosen
        ]
        done = await records.recorded(pool, [p.score_id(s) for s, p in plans])
        summary.already_done += len(done)
        todo = [(s, p) for s, p in plans if p.score_id(s) not in done]
        finished = [e for e in await asyncio.gather(*(evaluate(s, p) for s, p in todo)) if e is not None]
        stored = await records.record(pool, finished)
        await asyncio.gather(publish_scores(bus, list(done.values())), publish_scores(bus, stored))
        summary.scored += sum(e.status == "ok" for e in stored)
        summary.errors += sum(e.status == "error" for e in stored)
        progress(len(spans))
    return summary
