"""The rollout worker: every registry process visits the running rollouts about once a second and
moves each one on when its step has seen enough runs.

A visit holds the rollout's row lock (taken with SKIP LOCKED: a replica never waits for another, and
never both advance one rollout), asks the aggregator over NATS how to_version compares with
from_version in the step so far, and commits the step's outcome with its label move in the same
transaction. The label move is then announced as any other (caches, replicas, watching SDKs); a
rollback's event waits in the rollouts table (an outbox) until JetStream has stored it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import nats.errors
from prometheus_client import Counter

from services.common.bus import Bus
from services.common.logs import get_logger
from services.registry import rollout_store
from services.registry.registry import PromptRegistry
from services.registry.rollouts import (
    Advance,
    CompareFailed,
    RollBack,
    Rollout,
    Wait,
    judge,
    rollback_event,
    samples_of,
)
from services.registry.store import LabelMove

log = get_logger(component="rollout-worker")

POLL_SECONDS = 1.0  # a step passes within about a second of its last needed run being rolled up
COMPARE_TIMEOUT_SECONDS = 3.0  # the aggregator answers a two-version compare in milliseconds
VISITS_AT_ONCE = 4  # each visit holds a pooled connection while the aggregator answers
VISITS_PER_ROUND = 200
TRANSITIONS = Counter("vane_registry_rollout_transitions_total", "Rollout steps taken, by outcome", ["event"])


def _now() -> datetime:
    return datetime.now(UTC)


async def announce(registry: PromptRegistry, rollout: Rollout, move: LabelMove | None) -> None:
    """Announce a rollout's committed label move as any other, then clear its pending mark."""
    if move is not None:
        await registry.announce_move(rollout.project_id, rollout.prompt, move)
    await rollout_store.announced(registry.pool, rollout)


class RolloutWorker:
    def __init__(self, registry: PromptRegistry, bus: Bus) -> None:
        self._registry = registry
        self._pool = registry.pool
        self._bus = bus
        self._slots = asyncio.Semaphore(VISITS_AT_ONCE)

    async def run(self, stopping: asyncio.Event) -> None:
        """Visit running rollouts and publish pending rollback events until stopping."""
        while not stopping.is_set():
            try:
                await self.announce_pending()
                ids = await rollout_store.to_visit(self._pool, VISITS_PER_ROUND)
                await asyncio.gather(*(self._visit_in_slot(i) for i in ids))
                await self.publish_rollbacks()
            except Exception as exc:  # Postgres or NATS away: the next round tries again
                log.warning("rollout_round_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_SECONDS)

    async def _visit_in_slot(self, rollout_id: uuid.UUID) -> None:
        async with self._slots:
            try:
                await self.visit(rollout_id)
            except Exception as exc:
                log.warning("rollout_visit_failed", rollout=str(rollout_id), error=str(exc))

    async def visit(self, rollout_id: uuid.UUID) -> None:
        """One look at one rollout: wait, advance, complete or roll back (or skip: another replica has it)."""
        move: LabelMove | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await rollout_store.lock_running(conn, rollout_id, _now())
            if locked is None:
                return
            rollout: Rollout = locked
            decision: Wait | Advance | RollBack | None = None
            try:
                if rollout.baseline is None:
                    baseline = samples_of(await self._compare(rollout.compare_request(rollout.step_started_at)))
                    await rollout_store.keep_baseline(conn, rollout, baseline)
                else:
                    decision = judge(rollout, await self._compare(rollout.compare_request(_now())))
            except CompareFailed as exc:
                log.warning("rollout_compare_unanswered", rollout=str(rollout.id), error=str(exc))
            now = _now()
            by = f"rollout:{rollout.id}"
            if await rollout_store.label_moved_away(conn, rollout, now):
                TRANSITIONS.labels("aborted").inc()
                log.warning("rollout_label_moved_away", rollout=str(rollout.id), prompt=rollout.prompt)
                return
            if isinstance(decision, Advance):
                move = await rollout_store.advance(conn, rollout, decision, by, now)
                TRANSITIONS.labels("completed" if decision.completed else "advanced").inc()
                log.info("rollout_advanced", rollout=str(rollout.id), step=decision.step, reason=decision.reason)
            elif isinstance(decision, RollBack):
                event = rollback_event(rollout, decision, now)
                move = await rollout_store.roll_back(conn, rollout, decision, event, by, now)
                TRANSITIONS.labels("rolled_back").inc()
                log.warning("rollout_rolled_back", rollout=str(rollout.id), metric=decision.metric)
        if move is not None:
            after = await rollout_store.get(self._pool, rollout.project_id, rollout.prompt, rollout.id)
            await announce(self._registry, after.rollout, move)
            await self.publish_rollbacks()

    async def announce_pending(self) -> None:
        """Moves committed just before a crash (of this replica or another) are announced now."""
        for rollout in await rollout_store.unannounced(self._pool):
            await announce(self._registry, rollout, LabelMove(rollout.label, (), rollout.expected_split))

    async def _compare(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            msg = await self._bus.nc.request(
                self._bus.topology.compare_subject, json.dumps(request).encode(), timeout=COMPARE_TIMEOUT_SECONDS
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise CompareFailed(f"no answer from the aggregator: {exc!r}") from None
        try:
            reply = json.loads(msg.data)
        except ValueError as exc:
            raise CompareFailed(f"the aggregator's answer is not JSON: {exc}") from None
        if not isinstance(reply, dict):
            raise CompareFailed("the aggregator's answer is not an object")
        return reply

    async def publish_rollbacks(self) -> None:
        """Publish rollback events that are committed but not yet on JetStream (after a crash too).
        The event id is the message id, so a publish repeated after a crash is stored once."""
        async with self._pool.acquire() as conn, conn.transaction():
            for rollout_id, event in await rollout_store.unpublished_rollbacks(conn):
                await self._bus.publish(
                    self._bus.topology.decisions_subject("rollback"), json.dumps(event).encode(), msg_id=event["id"]
                )
                await rollout_store.mark_published(conn, rollout_id, _now())
                log.info("rollback_published", rollout=str(rollout_id), metric=event.get("metric"))
