"""Postgres for guarded rollouts: the rollouts and their history.

Every transition (start, a step advanced, completed, rolled back, aborted) is one transaction with
the label move it makes, so a crash at any instant leaves the label and the rollout agreeing. A
running rollout is changed only under its row lock: the worker takes it with SKIP LOCKED, so two
replicas never both advance one rollout.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.common.errors import Conflict, Invalid, NotFound
from services.registry import store
from services.registry.rollouts import Advance, Event, Plan, RollBack, Rollout, split_at
from services.registry.store import Conn, LabelMove

_COLUMNS = """id, project_id, prompt, label, from_version, to_version, steps, step, min_samples_per_step,
    guardrails, status, step_started_at, step_baseline, created_by, created_at, finished_at"""


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    step: int
    weight: int
    event: Event
    reason: str


@dataclass(frozen=True)
class StoredRollout:
    """A rollout with what the API shows besides its state."""

    rollout: Rollout
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    history: list[HistoryEntry]


def _rollout(row: Any) -> Rollout:
    return Rollout(
        id=row["id"],
        project_id=row["project_id"],
        prompt=row["prompt"],
        label=row["label"],
        from_version=row["from_version"],
        to_version=row["to_version"],
        steps=tuple(row["steps"]),
        step=row["step"],
        min_samples_per_step=row["min_samples_per_step"],
        guardrails=tuple(row["guardrails"]),
        status=row["status"],
        step_started_at=row["step_started_at"],
        baseline=row["step_baseline"],
    )


async def _record(
    conn: Conn, rollout_id: uuid.UUID, at: datetime, step: int, weight: int, event: Event, why: str
) -> None:
    await conn.execute(
        "INSERT INTO rollout_history (rollout_id, at, step, weight, event, reason) VALUES ($1, $2, $3, $4, $5, $6)",
        rollout_id,
        at,
        step,
        weight,
        event,
        why,
    )


async def start(
    pool: asyncpg.Pool, project: uuid.UUID, name: str, plan: Plan, by: str, now: datetime
) -> tuple[Rollout, LabelMove | None]:
    """Create a rollout and put the label on its first step, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        current = await store.locked_allocation(conn, project, name, plan.label)
        running = await conn.fetchval(
            "SELECT id FROM rollouts WHERE project_id = $1 AND prompt = $2 AND label = $3 AND status = 'running'",
            project,
            name,
            plan.label,
        )
        if running is not None:
            raise Conflict(f"rollout {running} is already running on label {plan.label!r}", {"rollout": str(running)})
        if not current:
            raise Invalid(f"prompt {name!r} has no label {plan.label!r} to roll out on")
        if len(current) > 1:
            split = ", ".join(f"v{v} {w}%" for v, w in current)
            raise Invalid(f"label {plan.label!r} is already split ({split}): point it at one version first")
        from_version = current[0][0]
        if from_version == plan.to_version:
            raise Invalid(f"label {plan.label!r} already points at version {plan.to_version}")
        rollout_id = uuid.uuid4()
        completed = plan.steps[0] >= 100
        move = await store.split_label(
            conn, project, name, plan.label, split_at(from_version, plan.to_version, plan.steps[0]), by
        )
        await conn.execute(
            """INSERT INTO rollouts (id, project_id, prompt, label, from_version, to_version, steps, step,
                   min_samples_per_step, guardrails, status, step_started_at, created_by, created_at, finished_at,
                   announce_pending)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $12, $11, $13, true)""",
            rollout_id,
            project,
            name,
            plan.label,
            from_version,
            plan.to_version,
            list(plan.steps),
            plan.min_samples_per_step,
            list(plan.guardrails),
            "completed" if completed else "running",
            now,
            by,
            now if completed else None,
        )
        why = f"started: version {plan.to_version} takes {plan.steps[0]}% of {plan.label!r} from version {from_version}"
        await _record(conn, rollout_id, now, 0, plan.steps[0], "completed" if completed else "started", why)
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM rollouts WHERE id = $1", rollout_id)
    return _rollout(row), move


async def _history(conn: Conn, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[HistoryEntry]]:
    rows = await conn.fetch(
        "SELECT rollout_id, at, step, weight, event, reason FROM rollout_history "
        "WHERE rollout_id = ANY($1::uuid[]) ORDER BY id",
        ids,
    )
    out: dict[uuid.UUID, list[HistoryEntry]] = {i: [] for i in ids}
    for r in rows:
        out[r["rollout_id"]].append(HistoryEntry(r["at"], r["step"], r["weight"], r["event"], r["reason"]))
    return out


def _stored(row: Any, history: list[HistoryEntry]) -> StoredRollout:
    return StoredRollout(_rollout(row), row["created_by"], row["created_at"], row["finished_at"], history)


async def list_rollouts(pool: asyncpg.Pool, project: uuid.UUID, name: str) -> list[StoredRollout]:
    """A prompt's rollouts, newest first; NotFound for a prompt the project does not have."""
    if not await store.prompt_exists(pool, project, name):
        raise NotFound(f"prompt {name!r} not found")
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM rollouts WHERE project_id = $1 AND prompt = $2 ORDER BY created_at DESC, id",
            project,
            name,
        )
        history = await _history(conn, [r["id"] for r in rows])
    return [_stored(r, history[r["id"]]) for r in rows]


async def get(pool: asyncpg.Pool, project: uuid.UUID, name: str, rollout_id: uuid.UUID) -> StoredRollout:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM rollouts WHERE id = $1 AND project_id = $2 AND prompt = $3",
            rollout_id,
            project,
            name,
        )
        if row is None:
            raise NotFound(f"prompt {name!r} has no rollout {rollout_id}")
        history = await _history(conn, [rollout_id])
    return _stored(row, history[rollout_id])


async def abort(
    pool: asyncpg.Pool, project: uuid.UUID, name: str, rollout_id: uuid.UUID, by: str, now: datetime
) -> LabelMove | None:
    """Put the label back on from_version alone and end the rollout (waits for the worker's lock)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM rollouts WHERE id = $1 AND project_id = $2 AND prompt = $3 FOR UPDATE",
            rollout_id,
            project,
            name,
        )
        if row is None:
            raise NotFound(f"prompt {name!r} has no rollout {rollout_id}")
        rollout = _rollout(row)
        if rollout.status != "running":
            raise Conflict(f"rollout {rollout_id} is {rollout.status}, not running: nothing to abort")
        move = await store.split_label(conn, project, name, rollout.label, ((rollout.from_version, 100),), by)
        await _finish(conn, rollout, "aborted", now, moved=True)
        await _record(
            conn,
            rollout.id,
            now,
            rollout.step,
            0,
            "aborted",
            f"aborted by {by}: back on version {rollout.from_version}",
        )
    return move


async def _finish(
    conn: Conn, rollout: Rollout, status: str, now: datetime, event: dict[str, Any] | None = None, moved: bool = False
) -> None:
    await conn.execute(
        """UPDATE rollouts SET status = $2, finished_at = $3, rollback_event = $4::jsonb,
               announce_pending = announce_pending OR $5 WHERE id = $1""",
        rollout.id,
        status,
        now,
        json.dumps(event) if event is not None else None,
        moved,
    )


# -- the worker's side --------------------------------------------------------------------------


async def to_visit(pool: asyncpg.Pool, limit: int) -> list[uuid.UUID]:
    """Running rollouts, the longest unvisited first."""
    rows = await pool.fetch(
        "SELECT id FROM rollouts WHERE status = 'running' ORDER BY checked_at NULLS FIRST LIMIT $1", limit
    )
    return [r["id"] for r in rows]


async def lock_running(conn: Conn, rollout_id: uuid.UUID, now: datetime) -> Rollout | None:
    """The rollout under this transaction's lock, or None when it ended or another replica holds it."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM rollouts WHERE id = $1 AND status = 'running' FOR UPDATE SKIP LOCKED", rollout_id
    )
    if row is None:
        return None
    await conn.execute("UPDATE rollouts SET checked_at = $2 WHERE id = $1", rollout_id, now)
    return _rollout(row)


async def keep_baseline(conn: Conn, rollout: Rollout, baseline: int) -> None:
    await conn.execute("UPDATE rollouts SET step_baseline = $2 WHERE id = $1", rollout.id, baseline)


async def label_moved_away(conn: Conn, rollout: Rollout, now: datetime) -> bool:
    """When someone else moved the label, the rollout ends (aborted) and leaves the label where it is."""
    current = await store.locked_allocation(conn, rollout.project_id, rollout.prompt, rollout.label)
    if current == rollout.expected_split:
        return False
    where = ", ".join(f"v{v} {w}%" for v, w in current) or "nowhere"
    await _finish(conn, rollout, "aborted", now)
    await _record(conn, rollout.id, now, rollout.step, 0, "aborted", f"label moved outside the rollout (now {where})")
    return True


async def advance(conn: Conn, rollout: Rollout, decision: Advance, by: str, now: datetime) -> LabelMove | None:
    weight = rollout.steps[decision.step]
    split = split_at(rollout.from_version, rollout.to_version, weight)
    move = await store.split_label(conn, rollout.project_id, rollout.prompt, rollout.label, split, by)
    await conn.execute(
        """UPDATE rollouts SET step = $2, step_started_at = $3, step_baseline = NULL, status = $4::text,
               announce_pending = true,
               finished_at = CASE WHEN $4::text = 'completed' THEN $3::timestamptz END WHERE id = $1""",
        rollout.id,
        decision.step,
        now,
        "completed" if decision.completed else "running",
    )
    event: Event = "completed" if decision.completed else "advanced"
    await _record(conn, rollout.id, now, decision.step, weight, event, decision.reason)
    return move


async def roll_back(
    conn: Conn, rollout: Rollout, decision: RollBack, event: dict[str, Any], by: str, now: datetime
) -> LabelMove | None:
    """Back to from_version alone, with the rollback event kept for publishing after the commit."""
    split = split_at(rollout.from_version, rollout.to_version, 0)
    move = await store.split_label(conn, rollout.project_id, rollout.prompt, rollout.label, split, by)
    await _finish(conn, rollout, "rolled_back", now, event, moved=True)
    await _record(conn, rollout.id, now, rollout.step, 0, "rolled_back", decision.reason)
    return move


async def unpublished_rollbacks(conn: Conn, limit: int = 100) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """Rollback events not yet on NATS, locked for this transaction."""
    rows = await conn.fetch(
        """SELECT id, rollback_event::text AS event FROM rollouts
           WHERE rollback_event IS NOT NULL AND rollback_published_at IS NULL
           ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [(r["id"], json.loads(r["event"])) for r in rows]


async def mark_published(conn: Conn, rollout_id: uuid.UUID, now: datetime) -> None:
    await conn.execute("UPDATE rollouts SET rollback_published_at = $2 WHERE id = $1", rollout_id, now)


async def unannounced(pool: asyncpg.Pool, limit: int = 100) -> list[Rollout]:
    """Rollouts whose last label move was committed but perhaps never announced (a crash between)."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM rollouts WHERE announce_pending ORDER BY created_at LIMIT $1", limit
    )
    return [_rollout(r) for r in rows]


async def announced(pool: asyncpg.Pool, rollout: Rollout) -> None:
    """The move of this step and status is announced (a later move stays pending until its own is)."""
    await pool.execute(
        "UPDATE rollouts SET announce_pending = false WHERE id = $1 AND step = $2 AND status = $3",
        rollout.id,
        rollout.step,
        rollout.status,
    )
