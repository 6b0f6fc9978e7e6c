"""The aggregator's pipeline: consume a micro-batch, store it, roll it up, commit, then ack.

Each fetch of the spans or scores consumer becomes one transaction: new runs (or scores), the
pending scores they settle, and the rollup deltas of both. `run_pull_consumer` acks only after
`handle` returns, i.e. after the commit, so a crash at any instant leaves either nothing or all of
a batch committed, and the redelivery that follows adds only what is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge, Histogram

from services.aggregator import dataset_links, store
from services.aggregator.assembly import assemble, settle_waiting
from services.aggregator.decode import ACCELERATED, DecodedSpans, ScoreRow, Undecodable, decode_scores, decode_spans
from services.aggregator.rollup import AppliedScore, at_levels, batch_minute_cells, minute_cells
from services.aggregator.rollup_store import add_to_rollups
from services.common.bus import Bus
from services.common.logs import get_logger
from services.common.payload import CorruptPayload, payload_of

log = get_logger(component="aggregator.consume")

SPANS_STORED = Counter("vane_aggregator_spans_stored_total", "Spans stored for the first time")
SPANS_SKIPPED = Counter("vane_aggregator_spans_skipped_total", "Spans left out of a batch as invalid")
SCORES_STORED = Counter("vane_aggregator_scores_stored_total", "Scores stored for the first time")
SCORES_APPLIED = Counter("vane_aggregator_scores_applied_total", "Scores counted into rollups")
RUNS_COUNTED = Counter("vane_aggregator_runs_counted_total", "Runs (traces) counted into run rollups")
BATCH_SECONDS = Histogram("vane_aggregator_batch_seconds", "Time to commit one micro-batch", ["stream"])
PENDING_SCORES = Gauge("vane_aggregator_pending_scores", "Scores waiting for their span")
STALE_PENDING_SCORES = Gauge(
    "vane_aggregator_stale_pending_scores", "Scores that have waited for their span longer than an hour"
)

# The sweeper retries pending scores this old: younger ones are settled by their span's batch.
SWEEP_MIN_AGE_SECONDS = 2.0
STALE_AFTER_SECONDS = 3600.0


async def _with_retry(pool: asyncpg.Pool, work, attempts: int = 3):  # type: ignore[no-untyped-def]
    """Run `work(conn)` in a transaction; replicas locking rollup rows can deadlock, then retry."""
    for attempt in range(attempts):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            if attempt == attempts - 1:
                raise
            log.warning("transaction_retry", error=str(exc), attempt=attempt + 1)
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


class SpanSink:
    """Stores spans batches and rolls up their generations, with the pending scores they settle."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, partitions: store.Partitions) -> None:
        self.pool = pool
        self.bus = bus
        self.partitions = partitions
        log.info("span_path", accelerated=ACCELERATED)

    async def handle(self, msgs: Sequence[Msg]) -> None:
        decoded: list[DecodedSpans] = []
        for msg in msgs:
            try:
                spans = decode_spans(payload_of(msg))
            except (Undecodable, CorruptPayload) as exc:
                await self.bus.dead_letter(self.bus.topology.spans_stream, msg, str(exc))
                continue
            if spans.skipped:
                SPANS_SKIPPED.inc(len(spans.skipped))
                log.warning("spans_skipped", count=len(spans.skipped), first=spans.skipped[0])
            decoded.append(spans)
        batch = store.RunBatch(decoded)
        if not batch.count:
            return
        started = time.perf_counter()
        await self.partitions.ensure(self.pool, batch.days)

        async def work(conn: store.Conn) -> tuple[int, int]:
            stored = await store.store_runs(conn, batch)
            await dataset_links.link(conn, batch, stored)
            applied = await store.settle_scores(conn, await store.pending_of_traces(conn, stored))
            await add_to_rollups(conn, at_levels(batch_minute_cells(stored.spans, stored.keys, applied)))
            runs = await assemble(conn, stored)
            await runs.apply(conn)
            RUNS_COUNTED.inc(len(runs.added) - len(runs.retracted))
            return stored.count, len(applied)

        try:
            stored, applied = await _with_retry(self.pool, work)
        except asyncpg.CheckViolationError:
            # No partition for a row's day: another replica's retention dropped a day this one had
            # made. Forget the batch's days, so that the redelivery makes them again.
            self.partitions.forget(batch.days)
            raise
        SPANS_STORED.inc(stored)
        SCORES_APPLIED.inc(applied)
        BATCH_SECONDS.labels("spans").observe(time.perf_counter() - started)


class ScoreSink:
    """Stores score batches and counts those whose run is stored; the rest wait for their span."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus) -> None:
        self.pool = pool
        self.bus = bus

    async def handle(self, msgs: Sequence[Msg]) -> None:
        rows: list[ScoreRow] = []
        now_ns = time.time_ns()
        for msg in msgs:
            try:
                rows.extend(decode_scores(payload_of(msg), now_ns))
            except (Undecodable, CorruptPayload) as exc:
                await self.bus.dead_letter(self.bus.topology.scores_stream, msg, str(exc))
        if not rows:
            return
        started = time.perf_counter()

        async def work(conn: store.Conn) -> tuple[int, int]:
            new = await store.store_scores(conn, rows)
            applied = await store.settle_scores(conn, new)
            await _roll_up(applied, conn)
            return len(new), len(applied)

        stored, applied = await _with_retry(self.pool, work)
        SCORES_STORED.inc(stored)
        SCORES_APPLIED.inc(applied)
        BATCH_SECONDS.labels("scores").observe(time.perf_counter() - started)

    async def sweep(self, limit: int = 1000) -> int:
        """Retry scores that still wait for their span (a race with its batch, or a span days late)."""

        async def work(conn: store.Conn) -> int:
            pending = await store.oldest_pending(conn, limit, SWEEP_MIN_AGE_SECONDS)
            applied = await store.settle_scores(conn, pending)
            await _roll_up(applied, conn)
            return len(applied)

        applied = await _with_retry(self.pool, work)
        SCORES_APPLIED.inc(applied)
        counts = await self.pool.fetchrow(
            "SELECT count(*) AS pending, count(*) FILTER (WHERE received_at < now() - make_interval(secs => $1)) "
            "AS stale FROM scores WHERE NOT applied",
            STALE_AFTER_SECONDS,
        )
        assert counts is not None
        PENDING_SCORES.set(counts["pending"])
        STALE_PENDING_SCORES.set(counts["stale"])
        return int(applied)


async def _roll_up(applied: list[AppliedScore], conn: store.Conn) -> None:
    if applied:
        await add_to_rollups(conn, at_levels(minute_cells((), applied)))


async def settle_runs(pool: asyncpg.Pool, settle_seconds: float) -> int:
    """Count the runs whose root span did not come within the settle window; returns how many."""

    async def work(conn: store.Conn) -> int:
        runs = await settle_waiting(conn, settle_seconds)
        await runs.apply(conn)
        return len(runs.added)

    counted = int(await _with_retry(pool, work))
    RUNS_COUNTED.inc(counted)
    return counted
