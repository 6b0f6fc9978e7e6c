"""Synthetic generations for the aggregator's tests and benchmarks: spans and scores published
straight onto the bus (the path ingest takes), with the exact truth to check against."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from vane.v1 import bus_pb2

from services.common.bus import Bus, connect_bus
from services.common.settings import Settings

T = TypeVar("T")


@dataclass
class Load:
    """Generated spans and what any correct aggregation of them must say."""

    project_id: uuid.UUID
    spans: list[bus_pb2.CanonicalSpan] = field(default_factory=list)
    scores: list[bus_pb2.Score] = field(default_factory=list)

    def generations(self, **match: Any) -> list[bus_pb2.CanonicalSpan]:
        return [s for s in self.spans if all(getattr(s, k) == v for k, v in match.items())]


def make_load(
    project_id: uuid.UUID,
    n: int,
    seed: int = 7,
    prompt: str = "support-reply",
    prompt_versions: tuple[int, ...] = (1, 2),
    app_versions: tuple[str, ...] = ("baseline", "concise"),
    start_ns: int | None = None,
    spread_seconds: float = 3 * 3600,
    score_every: int = 3,
) -> Load:
    """n generations with log-normal latency, ttft and cost, spread over the last `spread_seconds`."""
    rng = np.random.default_rng(seed)
    start_ns = start_ns or time.time_ns() - int(spread_seconds * 1e9)
    starts = start_ns + (rng.random(n) * spread_seconds * 1e9).astype(np.int64)
    latency_ms = rng.lognormal(6.5, 0.8, n)
    ttft_ms = latency_ms * rng.uniform(0.05, 0.4, n)
    inputs = rng.lognormal(6.0, 0.6, n).astype(np.int64) + 1
    outputs = rng.lognormal(4.5, 0.7, n).astype(np.int64) + 1
    cost = rng.lognormal(-6.0, 0.9, n)
    load = Load(project_id)
    for i in range(n):
        span = bus_pb2.CanonicalSpan(
            project_id=str(project_id),
            trace_id=secrets.token_bytes(16),
            span_id=secrets.token_bytes(8),
            name="reply",
            kind="llm",
            app_version=app_versions[i % len(app_versions)],
            prompt_name=prompt,
            prompt_version=prompt_versions[(i // len(app_versions)) % len(prompt_versions)],
            model="gpt-4o" if i % 5 else "gpt-4o-mini",
            start_time_unix_nano=int(starts[i]),
            end_time_unix_nano=int(starts[i] + int(latency_ms[i] * 1e6)),
            ttft_ms=float(ttft_ms[i]),
            input_tokens=int(inputs[i]),
            output_tokens=int(outputs[i]),
            cost=float(cost[i]),
            status=bus_pb2.SPAN_STATUS_ERROR if i % 50 == 0 else bus_pb2.SPAN_STATUS_OK,
        )
        load.spans.append(span)
        if score_every and i % score_every == 0:
            load.scores.append(
                bus_pb2.Score(
                    project_id=str(project_id),
                    score_id=secrets.token_hex(8),
                    trace_id=span.trace_id,
                    span_id=span.span_id,
                    name="helpfulness",
                    value=float(rng.integers(1, 6)),
                    data_type=bus_pb2.SCORE_DATA_TYPE_NUMERIC,
                    source=bus_pb2.SCORE_SOURCE_EVAL,
                    created_unix_nano=time.time_ns(),
                )
            )
    return load


def latency_of(span: bus_pb2.CanonicalSpan) -> float:
    return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6


# Streams of a test namespace reserve this much JetStream storage, not the default 8 GiB each.
STREAM_MAX_BYTES = 256 * 1024**2


async def bus_for(settings: Settings, nats_url: str, namespace: str) -> Bus:
    config = dataclasses.replace(settings, nats_url=nats_url, namespace=namespace, stream_max_bytes=STREAM_MAX_BYTES)
    return await connect_bus(config, "test-load")


async def drop_streams(bus: Bus) -> None:
    """Delete the namespace's streams: a test's namespace is its own."""
    topology = bus.topology
    for stream in (topology.spans_stream, topology.scores_stream, topology.dead_letter_stream):
        with contextlib.suppress(Exception):
            await bus.js.delete_stream(stream)


async def publish_spans(
    bus: Bus, project_id: uuid.UUID, spans: list[bus_pb2.CanonicalSpan], per_batch: int = 500
) -> None:
    """One SpanBatch per `per_batch` spans, as ingest publishes one per OTLP request."""
    for i in range(0, len(spans), per_batch):
        batch = bus_pb2.SpanBatch(
            schema_version=1,
            project_id=str(project_id),
            spans=spans[i : i + per_batch],
            received_unix_nano=time.time_ns(),
        )
        # Ingest compresses span batches; batches published before that are plain: every other one is each.
        compress = (i // per_batch) % 2 == 0
        await bus.publish(
            bus.topology.spans_subject, batch.SerializeToString(), msg_id=secrets.token_hex(8), compress=compress
        )


async def publish_scores(bus: Bus, scores: list[bus_pb2.Score], per_batch: int = 500) -> None:
    for i in range(0, len(scores), per_batch):
        batch = bus_pb2.ScoreBatch(schema_version=1, scores=scores[i : i + per_batch])
        await bus.publish(bus.topology.scores_subject, batch.SerializeToString(), msg_id=secrets.token_hex(8))


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 60.0, every: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail with its last answer at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except Exception as exc:  # the service may be restarting
            last = exc
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not true after {timeout}s; last: {last!r}")
