"""Regressions: every label move is a deployment, checked once the new version has enough runs.

For a move of a label from version A to version B (single versions; splits are experiments' and
rollouts' business; `latest` is not a deployment, it follows each new version by itself), once B
has VANE_REGRESSION_MIN_SAMPLES generations since the move (the move's minute on), B over
[move, now) is compared with A over the window of the same length just before the move, on every
metric, by compare's tests with Holm's correction: one look, at a fixed sample size, so the
family-wise false-positive rate stays at α. A `b_worse` verdict beyond the margin
(VANE_REGRESSION_MARGIN, relative) is a regression: stored, listed at /api/v1/regressions, and
published on NATS for the alert service.

A move is settled in Postgres (regression_checks) in the same transaction that stores what it found,
so a restarted aggregator neither misses nor repeats one; a move superseded by another before B had
enough runs is settled as such. Publishing is an outbox: a regression is marked published once
JetStream has it, with its id as the message id, so a crash in between publishes it once more under
the same id, which JetStream (and the alert service) drop. One replica checks at a time (an advisory
lock held by its session). Runs are the version's generations of the prompt in each window: a version
serving another label at the same time counts those runs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.aggregator import compare
from services.aggregator.arms import read_versions
from services.aggregator.query import Filters, iso, ns_of
from services.aggregator.store import Conn
from services.common.bus import Bus
from services.common.logs import get_logger
from services.common.statistics.verdicts import Comparison, decide

log = get_logger(component="regressions")
TICK_SECONDS = 3.0
LOOKBACK = timedelta(days=7)  # older moves, unsettled at first start (an upgrade), are not checked
_LOCK_KEY = 0x7661_6E72  # "vanr": one replica checks at a time

_PENDING = """
SELECT h.id, h.project_id, h.name, h.label, h.from_version, h.to_version, h.moved_at,
       (SELECT min(n.moved_at) FROM prompt_label_history n
         WHERE n.project_id = h.project_id AND n.name = h.name AND n.label = h.label AND n.id > h.id) AS superseded_at
FROM prompt_label_history h
LEFT JOIN regression_checks c ON c.move_id = h.id
WHERE c.move_id IS NULL AND h.moved_at > now() - $1::interval AND h.label <> 'latest'
  AND h.from_version IS NOT NULL AND h.to_version IS NOT NULL AND h.from_version <> h.to_version
  AND jsonb_array_length(h.from_split) <= 1 AND jsonb_array_length(h.to_split) <= 1
ORDER BY h.id
"""


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def worsened(found: list[Comparison], margin: float) -> list[Comparison]:
    """The comparisons that say b is significantly worse, by more than the margin."""
    return [c for c in found if c.verdict == "b_worse" and abs(c.relative_difference or 0.0) > margin]


async def check_move(conn: Conn, move: asyncpg.Record, min_samples: int, margin: float) -> None:
    """Settle one move if it can be: check it (B has enough runs), or mark it superseded."""
    project, name = move["project_id"], move["name"]
    a, b = move["from_version"], move["to_version"]
    moved = _minute(move["moved_at"])
    now = datetime.now(moved.tzinfo)
    after_end = move["superseded_at"] or now
    after = Filters(start=moved, end=after_end)
    wanted: set[Hashable] = {b}
    data_b = (await read_versions(conn, project, after, name, lambda _, v: v == b, wanted)).get(b)
    n = data_b.generations if data_b else 0
    if n < min_samples:
        if move["superseded_at"] is not None:
            await conn.execute(
                "INSERT INTO regression_checks (move_id, outcome) VALUES ($1, 'superseded') ON CONFLICT DO NOTHING",
                move["id"],
            )
        return
    length = _minute(after_end) + timedelta(minutes=1) - moved
    before = Filters(start=moved - length, end=moved)
    data_a = (await read_versions(conn, project, before, name, lambda _, v: v == a, {a})).get(a)
    found = []
    if data_a is not None and data_b is not None:
        kinds = await compare.score_kinds(conn, project)
        found = worsened(decide(compare.comparisons(data_a, data_b, kinds)), margin)
    async with conn.transaction():
        settled = await conn.fetchval(
            "INSERT INTO regression_checks (move_id, outcome) VALUES ($1, 'checked') ON CONFLICT DO NOTHING "
            "RETURNING move_id",
            move["id"],
        )
        if settled is None:  # another replica settled it meanwhile
            return
        for c in found:
            await conn.execute(
                "INSERT INTO regressions (project_id, move_id, prompt_name, label, from_version, to_version, "
                "moved_at, metric, statistic, comparison) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "ON CONFLICT DO NOTHING",
                project,
                move["id"],
                name,
                move["label"],
                a,
                b,
                move["moved_at"],
                c.metric,
                c.statistic,
                json.dumps(c.body()),
            )
    for c in found:
        log.warning("regression_found", prompt=name, label=move["label"], from_version=a, to_version=b, metric=c.metric)


def _event(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "prompt": r["prompt_name"],
        "label": r["label"],
        "from_version": r["from_version"],
        "to_version": r["to_version"],
        "moved_at": iso(ns_of(r["moved_at"])),
        "detected_at": iso(ns_of(r["detected_at"])),
        "metric": r["metric"],
        "statistic": r["statistic"],
        "comparison": json.loads(r["comparison"]),
    }


async def publish_pending(conn: Conn, bus: Bus) -> int:
    """Publish what is stored and not yet on NATS (the outbox); returns how many."""
    rows = await conn.fetch("SELECT * FROM regressions WHERE NOT published ORDER BY detected_at LIMIT 500")
    subject = bus.topology.decisions_subject("regression")
    for r in rows:
        event = {"kind": "regression", "project_id": str(r["project_id"]), **_event(r)}
        await bus.publish(subject, json.dumps(event).encode(), msg_id=f"regression-{r['id']}")
        await conn.execute("UPDATE regressions SET published = true WHERE id = $1", r["id"])
    return len(rows)


async def check_once(conn: Conn, bus: Bus, min_samples: int, margin: float) -> None:
    """One pass over the unsettled moves of every project, then the outbox; skipped while another
    replica holds the lock."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
        return
    try:
        for move in await conn.fetch(_PENDING, LOOKBACK):
            await check_move(conn, move, min_samples, margin)
        await publish_pending(conn, bus)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def run(pool: asyncpg.Pool, bus: Bus, min_samples: int, margin: float, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            async with pool.acquire() as conn:
                await check_once(conn, bus, min_samples, margin)
        except Exception as exc:  # Postgres or NATS away: the next tick retries, nothing is settled twice
            log.warning("regression_check_failed", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), TICK_SECONDS)


async def listed(
    pool: asyncpg.Pool, project: uuid.UUID, prompt: str | None, start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT * FROM regressions WHERE project_id = $1 AND ($2::text IS NULL OR prompt_name = $2) "
        "AND ($3::timestamptz IS NULL OR detected_at >= $3) AND ($4::timestamptz IS NULL OR detected_at < $4) "
        "ORDER BY detected_at DESC, metric LIMIT 1000",
        project,
        prompt,
        start,
        end,
    )
    return {"regressions": [_event(r) for r in rows]}
