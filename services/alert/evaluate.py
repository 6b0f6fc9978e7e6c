"""The evaluator: every VANE_ALERT_EVALUATE_SECONDS, each rule due is read (readings), judged
(conditions), moved on (states) and, when it changed state, recorded with its notifications
(notify), all in the transaction that claimed it.

Rules are claimed with FOR UPDATE SKIP LOCKED and only when not evaluated within the interval, so
several replicas split the rules between them and never evaluate (or fire) one twice. Rules of a
round that share a scope and window share one read of the rollups.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.aggregator.store import Conn
from services.alert import channels, conditions, notify, rules, silences
from services.alert.conditions import HISTORY_DAYS, Outcome
from services.alert.readings import Reader, Window
from services.alert.rules import Rule
from services.alert.states import RuleState, Step, advance
from services.common.logs import get_logger
from services.common.settings import Settings

log = get_logger(component="alert-evaluate")

# Rules claimed per transaction: a round of 10,000 rules is twenty transactions, none holding its
# row locks for long.
CLAIM_BATCH = 500
_CLAIM = """
SELECT id, project_id, name, spec::text AS spec, state, level, since, active_at, notified_at, refreshed_at
FROM alert_rules
WHERE evaluated_at IS NULL OR evaluated_at < $1
ORDER BY evaluated_at NULLS FIRST
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
_UPDATE = """
UPDATE alert_rules AS r SET state = u.state, level = u.level, since = u.since, active_at = u.active_at,
    notified_at = u.notified_at, refreshed_at = u.refreshed_at, last_value = u.value, evaluated_at = $1
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[],
            $8::timestamptz[], $9::float8[]) AS u(id, state, level, since, active_at, notified_at, refreshed_at, value)
WHERE r.id = u.id
"""
MINUTES_PER_DAY = 1440


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


@dataclass
class Round:
    """One round's figures: rules evaluated, transitions, notifications queued, seconds taken."""

    rules: int = 0
    transitions: int = 0
    queued: int = 0
    seconds: float = 0.0


ReadWindow = Callable[[Rule, int, int], Awaitable[Window]]


async def outcome(rule: Rule, now: datetime, read: ReadWindow) -> Outcome:
    """The rule's condition over its windows ending with the current (partial) minute."""
    end = minute_of(now) + 1
    start = end - rule.window_minutes
    current = await read(rule, start, end)
    op = rule.body.condition.op
    if op in ("above", "below"):
        return conditions.threshold(rule, current)
    if op == "change":
        baseline = await read(rule, start - rule.baseline_minutes, start)
        return conditions.change(rule, current, baseline)
    days = range(1, HISTORY_DAYS + 1)
    history = [await read(rule, start - d * MINUTES_PER_DAY, end - d * MINUTES_PER_DAY) for d in days]
    return conditions.anomaly(rule, current, history)


def _event(rule_id: uuid.UUID, rule: Rule, step: Step, found: Outcome, previous: RuleState) -> dict[str, Any]:
    spec = rules.to_spec(rule)
    level = step.state.level or previous.level
    severity = "warning" if level == "warning" else rule.body.severity
    return {
        "kind": "rule",
        "state": step.event,
        "level": level,
        "severity": severity,
        "renotify": step.renotify,
        "value": found.value,
        "details": found.details,
        "started_at": (step.state.since or previous.since or datetime.now(UTC)).isoformat()
        if step.event == "firing"
        else None,
        "rule": {
            "id": str(rule_id),
            "name": rule.body.name,
            "metric": rule.metric,
            "statistic": rule.statistic,
            "scope": spec["scope"],
            "condition": spec["condition"],
        },
    }


class Evaluator:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, reader: Reader | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.reader = reader or Reader()

    def generator_url(self, rule_id: uuid.UUID | None) -> str:
        base = self.settings.alert_public_url.rstrip("/")
        return f"{base}/api/v1/alerts/events" + (f"?rule={rule_id}" if rule_id else "")

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                found = await self.round(datetime.now(UTC))
                if found.transitions:
                    log.info("alert_round", rules=found.rules, transitions=found.transitions, queued=found.queued)
            except Exception as exc:  # Postgres away: the next round tries again
                log.warning("alert_round_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), min(1.0, self.settings.alert_evaluate_seconds / 4))

    async def round(self, now: datetime, force: bool = False) -> Round:
        """Evaluate every rule due at `now` (every rule with `force`)."""
        began = time.perf_counter()
        total = Round()
        due_before = now if force else now - timedelta(seconds=self.settings.alert_evaluate_seconds)
        # What one round reads of the rollups is read once, whatever the number of its batches.
        self.reader.forget()
        windows: dict[tuple[Any, ...], Window] = {}
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                claimed = await conn.fetch(_CLAIM, due_before, CLAIM_BATCH)
                if not claimed:
                    break
                await self._batch(conn, claimed, now, total, windows)
            if len(claimed) < CLAIM_BATCH:
                break
        total.seconds = time.perf_counter() - began
        return total

    async def _batch(
        self,
        conn: Conn,
        claimed: list[asyncpg.Record],
        now: datetime,
        total: Round,
        windows: dict[tuple[Any, ...], Window],
    ) -> None:
        known = notify.Known()

        async def read_for(project: uuid.UUID) -> ReadWindow:
            async def read(rule: Rule, start: int, end: int) -> Window:
                key = (project, rule.runs, _scope_key(rule), start, end)
                if key not in windows:
                    reader = self.reader.runs if rule.runs else self.reader.generations
                    windows[key] = await reader(conn, project, rule.scope, start, end)
                return windows[key]

            return read

        updates: list[tuple[Any, ...]] = []
        transitions: list[notify.Transition] = []
        for row in claimed:
            previous = RuleState(row["state"], row["level"], row["since"], row["active_at"], row["notified_at"])
            refreshed = row["refreshed_at"]
            try:  # a rule that cannot be judged keeps its state; the others of the batch go on
                rule = rules.parse(json.loads(row["spec"]))
                found = await outcome(rule, now, await read_for(row["project_id"]))
                step = advance(rule, previous, found.level, now)
            except (asyncpg.PostgresError, OSError):
                raise
            except Exception as exc:
                log.exception("rule_not_evaluated", rule=str(row["id"]), error=str(exc))
                s = previous
                updates.append((row["id"], s.state, s.level, s.since, s.active_at, s.notified_at, refreshed, None))
                continue
            if step.event is not None:
                total.transitions += 1
                event = _event(row["id"], rule, step, found, previous)
                targets = rules.to_spec(rule)["channels"]
                url = self.generator_url(row["id"])
                transitions.append(notify.Transition(row["project_id"], row["id"], event, targets, step.notify, url))
                if step.event == "firing":
                    refreshed = now
            elif step.state.state == "firing":
                refreshed = await self._refresh(conn, row, rule, step, found, previous, now, known)
            s = step.state
            updates.append((row["id"], s.state, s.level, s.since, s.active_at, s.notified_at, refreshed, found.value))
        total.rules += len(claimed)
        total.queued += await notify.record_all(conn, transitions, now, known)
        columns = list(zip(*updates, strict=True))
        await conn.execute(_UPDATE, now, *[list(c) for c in columns])

    async def _refresh(
        self,
        conn: Conn,
        row: asyncpg.Record,
        rule: Rule,
        step: Step,
        found: Outcome,
        previous: RuleState,
        now: datetime,
        known: notify.Known,
    ) -> datetime | None:
        """Post a firing alert to Alertmanager again before its endsAt runs out, as Prometheus does."""
        refreshed: datetime | None = row["refreshed_at"]
        if refreshed is not None and (now - refreshed).total_seconds() < self.settings.alert_resend_seconds:
            return refreshed
        targets = [c for c in rules.to_spec(rule)["channels"] if c["type"] == "alertmanager"]
        if not targets:
            return refreshed
        event = {
            **_event(row["id"], rule, Step(step.state, "firing"), found, previous),
            "project_id": str(row["project_id"]),
            "at": now.isoformat(),
            "started_at": (step.state.since or now).isoformat(),
        }
        project = row["project_id"]
        if not silences.silenced(await known.silences(conn, project, now), channels.labels_of(event)):
            disabled = await known.disabled(conn, project)
            await notify.enqueue(conn, project, None, event, targets, self.generator_url(row["id"]), now, disabled)
        return now


def _scope_key(rule: Rule) -> tuple[Any, ...]:
    s = rule.scope
    return (s.prompt, s.prompt_version, s.label, s.app_version, s.model, s.project_name)
