"""Run retention: the daily partitions of `runs` that ended more than VANE_RUNS_RETENTION_DAYS ago are
dropped whole, with the scores of their runs (the `scores` table is not partitioned). Rollups are
kept: they are small, and they are the history that versions are compared on.

Partitions are found in the catalog (pg_inherits and each partition's bound), not from what this
process made, so a partition made by another replica or an older release goes too. One replica at a
time does the work, under a Postgres advisory lock; the others skip that round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from services.aggregator.store import Conn
from services.common.logs import get_logger

log = get_logger(component="aggregator.retention")

# "vane" + "rt": distinct from the migrations' lock
LOCK_KEY = 0x7661_6E65_7274
# Once detached, nothing reads a partition: its DROP should never wait, and gives up if it would.
LOCK_TIMEOUT = "5s"

# `detaching`: a DETACH … CONCURRENTLY that was cut short (a replica killed mid-way) left it pending.
_PARTITIONS = r"""
SELECT c.oid::regclass::text AS name, i.inhdetachpending AS detaching,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS ends
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'runs'::regclass
ORDER BY ends
"""
# A settled score names the run it counts toward (or, in a trace without generations, the span it
# was given to): that run is the one it belongs to.
_DELETE_SCORES = """
DELETE FROM scores s USING {partition} r
WHERE s.project_id = r.project_id AND s.trace_id = r.trace_id AND s.target_span_id = r.span_id
"""


@dataclass(frozen=True)
class Dropped:
    partition: str
    ends: datetime
    scores: int


def cutoff(now: datetime, retention_days: int) -> datetime:
    """Runs that started before this instant are past the retention."""
    return now - timedelta(days=retention_days)


async def drop_expired(pool: asyncpg.Pool, retention_days: int, now: datetime | None = None) -> list[Dropped] | None:
    """Drop every partition of `runs` that ends at or before the cutoff, with its runs' scores.

    Returns what was dropped, or None when another replica holds the lock (or retention is off: 0 days).
    """
    if retention_days <= 0:
        return None
    until = cutoff(now or datetime.now(UTC), retention_days)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            return None
        try:
            dropped = []
            for p in await conn.fetch(_PARTITIONS):
                if p["ends"] is None or p["ends"] > until:  # a DEFAULT or open-ended partition, or a kept day
                    continue
                dropped.append(await _drop(conn, p["name"], p["ends"], p["detaching"]))
            return dropped
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _drop(conn: Conn, partition: str, ends: datetime, detaching: bool) -> Dropped:
    # The name comes from the catalog (regclass text: quoted where it needs to be).
    # Detached CONCURRENTLY, `runs` is only SHARE UPDATE EXCLUSIVE locked: writes and reads of the other
    # days go on while it waits for the transactions that may still see this day. (DROP TABLE of an
    # attached partition would queue an exclusive lock on `runs` that every writer waits behind.)
    await conn.execute(f"ALTER TABLE runs DETACH PARTITION {partition} {'FINALIZE' if detaching else 'CONCURRENTLY'}")
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        deleted = await conn.execute(_DELETE_SCORES.format(partition=partition))
        await conn.execute(f"DROP TABLE {partition}")
    scores = int(deleted.split()[-1])
    log.info("runs_partition_dropped", partition=partition, ended=ends.isoformat(), scores_deleted=scores)
    return Dropped(partition, ends, scores)


def days_of(dropped: list[Dropped]) -> set[date]:
    """The days whose partitions went (a partition ends at midnight after its day)."""
    return {(d.ends - timedelta(days=1)).astimezone(UTC).date() for d in dropped}
