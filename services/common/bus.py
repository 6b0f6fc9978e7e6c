"""NATS JetStream: every stream, subject and consumer of Vane declared here, in one place.

Streams and consumers are declared idempotently at every service start (add, or update to this
config), so that producers and consumers agree without an ordering between deployments.
Subjects and names carry the namespace, so that separate stacks and test runs share one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError

from services.common.logs import get_logger
from services.common.payload import ENCODING_HEADER, ZSTD, compressed
from services.common.settings import Settings

log = get_logger(component="bus")
DECISIONS_MAX_BYTES = 64 * 1024**2
_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Topology:
    """The names of everything on the bus for one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        if not _NAMESPACE.match(self.namespace):
            raise SystemExit(f"VANE_NAMESPACE must match {_NAMESPACE.pattern}, got {self.namespace!r}")

    # Streams: canonical spans from ingest; scores from ingest and the evaluator; dead letters.
    @property
    def spans_stream(self) -> str:
        return f"{self.namespace.upper()}_SPANS"

    @property
    def scores_stream(self) -> str:
        return f"{self.namespace.upper()}_SCORES"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.namespace.upper()}_DEAD_LETTERS"

    @property
    def spans_subject(self) -> str:
        return f"{self.namespace}.spans"

    @property
    def scores_subject(self) -> str:
        return f"{self.namespace}.scores"

    # Decisions the aggregator and registry reach (a regression found, a rollout rolled back), for
    # the alert service: `{namespace}.decisions.regression`, `{namespace}.decisions.rollback`.
    @property
    def decisions_stream(self) -> str:
        return f"{self.namespace.upper()}_DECISIONS"

    def decisions_subject(self, kind: str) -> str:
        return f"{self.namespace}.decisions.{kind}"

    # Core NATS request/reply: the aggregator's replicas (queue group "aggregator") answer a compare
    # asked by another service (the registry's rollouts), as GET /api/v1/compare would.
    @property
    def compare_subject(self) -> str:
        return f"{self.namespace}.compare"

    def dead_letter_subject(self, stream: str) -> str:
        return f"{self.namespace}.dead.{stream.lower()}"

    # Core NATS (not persisted): a prompt changed, so caches drop it and watchers hear of it.
    @property
    def prompt_changes_subject(self) -> str:
        return f"{self.namespace}.prompts.changed"

    # Core NATS (not persisted): a key was revoked, so every replica drops its cached key lookups.
    @property
    def keys_revoked_subject(self) -> str:
        return f"{self.namespace}.keys.revoked"

    # Durable pull consumers: replicas of one service share a consumer and split its messages.
    AGGREGATOR_SPANS = "aggregator-spans"
    AGGREGATOR_SCORES = "aggregator-scores"
    EVALUATOR_SPANS = "evaluator-spans"
    ALERT_DECISIONS = "alert-decisions"

    def streams(self, settings: Settings) -> list[StreamConfig]:
        def stream(name: str, subjects: list[str], work: bool, max_bytes: int | None = None) -> StreamConfig:
            # Work streams keep a message until every consumer has acked it, and refuse new ones
            # when full (ingest then answers 503 and the client retries): a backlog is never
            # dropped to make room. Dead letters are kept for inspection until they age out.
            return StreamConfig(
                name=name,
                subjects=subjects,
                retention=RetentionPolicy.INTEREST if work else RetentionPolicy.LIMITS,
                discard=DiscardPolicy.NEW if work else DiscardPolicy.OLD,
                storage=StorageType.FILE,
                max_age=settings.stream_max_age_hours * 3600,
                max_bytes=max_bytes or settings.stream_max_bytes,
                duplicate_window=120.0,  # a retried publish with the same Nats-Msg-Id is stored once
            )

        return [
            stream(self.spans_stream, [self.spans_subject], work=True),
            stream(self.scores_stream, [self.scores_subject], work=True),
            # decisions are a few a day, a kilobyte each: they reserve little of JetStream's storage
            stream(
                self.decisions_stream,
                [f"{self.namespace}.decisions.>"],
                work=True,
                max_bytes=min(DECISIONS_MAX_BYTES, settings.stream_max_bytes),
            ),
            stream(self.dead_letter_stream, [f"{self.namespace}.dead.>"], work=False),
        ]

    def consumers(self) -> list[tuple[str, ConsumerConfig]]:
        def durable(name: str, ack_wait: float) -> ConsumerConfig:
            return ConsumerConfig(
                durable_name=name,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ack_wait,
                max_deliver=-1,  # never drop: a poison message is dead-lettered by the consumer
                max_ack_pending=20_000,
            )

        return [
            # A batch commits in well under 10 s; a crashed replica's batch comes back after that.
            (self.spans_stream, durable(self.AGGREGATOR_SPANS, 10.0)),
            (self.scores_stream, durable(self.AGGREGATOR_SCORES, 10.0)),
            # The judge is slow: give a fetched batch longer before it is redelivered.
            (self.spans_stream, durable(self.EVALUATOR_SPANS, 120.0)),
            (self.decisions_stream, durable(self.ALERT_DECISIONS, 30.0)),
        ]


class Bus:
    """A NATS connection with its JetStream context and the namespace's topology."""

    def __init__(self, nc: NATS, topology: Topology) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=5.0)
        self.topology = topology

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def declare(self, settings: Settings) -> None:
        for config in self.topology.streams(settings):
            assert config.name is not None
            try:
                await self.js.stream_info(config.name)
            except NotFoundError:
                await self.js.add_stream(config)
                continue
            try:
                await self.js.update_stream(config)
            except APIError as exc:  # e.g. a retention policy the server will not change in place
                log.warning("stream_config_kept", stream=config.name, reason=str(exc))
        for stream, consumer in self.topology.consumers():
            await self.js.add_consumer(stream, consumer)

    async def publish(
        self, subject: str, payload: bytes, msg_id: str | None = None, timeout: float = 5.0, compress: bool = False
    ) -> None:
        """Publish to a stream and return only once JetStream has stored it. A compressed payload is
        marked, and consumers read it back with `payload_of`."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else {}
        frame = compressed(payload) if compress else None
        if frame is not None:
            payload, headers[ENCODING_HEADER] = frame, ZSTD
        await self.js.publish(subject, payload, timeout=timeout, headers=headers or None)

    async def dead_letter(self, stream: str, msg: Msg, reason: str) -> None:
        """Keep a message that cannot be processed, with the reason, out of the way of the rest."""
        headers = {"Vane-Dead-Reason": reason[:500], "Vane-Source-Subject": msg.subject}
        if msg.headers and ENCODING_HEADER in msg.headers:  # its bytes stay as they came: still readable
            headers[ENCODING_HEADER] = msg.headers[ENCODING_HEADER]
        await self.js.publish(self.topology.dead_letter_subject(stream), msg.data, headers=headers)
        log.warning("dead_lettered", stream=stream, reason=reason)

    async def close(self) -> None:
        if not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), timeout=5)
            except Exception:
                await self.nc.close()


async def connect_bus(settings: Settings, name: str, deadline_seconds: float = 30.0) -> Bus:
    """Connect (retrying while NATS starts), then keep reconnecting for ever once connected."""

    async def on_disconnect() -> None:
        log.warning("nats_disconnected")

    async def on_reconnect() -> None:
        log.info("nats_reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_seconds
    delay = 0.2
    while True:
        try:
            nc = await nats.connect(
                settings.nats_url,
                name=f"vane-{name}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=3,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=on_error,
            )
            break
        except Exception as exc:
            if loop.time() + delay > end:
                raise
            log.warning("nats_not_ready", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    bus = Bus(nc, Topology(settings.namespace))
    await bus.declare(settings)
    return bus


BatchHandler = Callable[[Sequence[Msg]], Awaitable[None]]


async def run_pull_consumer(
    bus: Bus,
    stream: str,
    durable: str,
    handle: BatchHandler,
    stopping: asyncio.Event,
    batch: int = 256,
    fetch_timeout: float = 0.5,
) -> None:
    """Fetch batches and hand each to `handle`, which must commit its effect before returning.

    Messages are acked only after `handle` returns; when it raises, they are nak'ed with a
    delay and come back. Stops between batches once `stopping` is set.
    """
    sub = await bus.js.pull_subscribe_bind(durable=durable, stream=stream)
    while not stopping.is_set():
        try:
            msgs = await sub.fetch(batch=batch, timeout=fetch_timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        except Exception as exc:  # connection lost: the client reconnects on its own
            log.warning("fetch_failed", stream=stream, consumer=durable, error=str(exc))
            await asyncio.sleep(0.5)
            continue
        try:
            await handle(msgs)
        except Exception as exc:
            log.exception("batch_failed", stream=stream, consumer=durable, error=str(exc))
            for msg in msgs:
                # unacked messages come back after ack_wait anyway
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
            await asyncio.sleep(0.5)
            continue
        for msg in msgs:
            try:
                await msg.ack()
            except Exception as exc:  # the effect is committed and idempotent: a redelivery is harmless
                log.warning("ack_failed", error=str(exc))
    await sub.unsubscribe()
