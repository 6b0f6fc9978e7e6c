"""Wires the aggregator. A span batch goes: consume (consume.py: fetch a micro-batch) → decode
(decode.py) → store (store.py: COPY, insert what is new) → settle waiting scores (scores.py) →
roll up (rollup.py, sketches.py) → commit → ack. Scores take the same path from their own stream.
The query API (api.py → query.py, traces.py) reads rollups and runs; the dashboard (dashboard/) is the
page at `/` that reads it; retention (retention.py) drops runs past VANE_RUNS_RETENTION_DAYS, at start
and hourly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from litestar.di import Provide

from services.aggregator import compare_responder, regressions, retention, version_merge
from services.aggregator.api import MetricsController, RunController
from services.aggregator.consume import ScoreSink, SpanSink, settle_runs
from services.aggregator.dashboard import dashboard_routes
from services.aggregator.datasets_api import DatasetController
from services.aggregator.decide_api import DecideController
from services.aggregator.experiments_api import ExperimentController, RegistryLink
from services.aggregator.store import Partitions
from services.common.bus import BatchHandler, Topology, run_pull_consumer
from services.common.http import build_http_app, project_routes
from services.common.logs import get_logger
from services.common.runtime import Component, HttpServer, Needs, Resources, Worker, run_service

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # a Worker's body

NAME = "aggregator"
NEEDS = Needs(postgres=True, nats=True)
log = get_logger(component=NAME)

# A fetch takes what is there, up to this many messages (one OTLP export each): one transaction.
# Each batch pays a fixed rollup cost (every level's row of every key it touches), so a backlog
# drains faster in big batches (64: ~30k spans/s) but each then commits late; 32 (~16,000 spans)
# measured ~24k spans/s draining and ack→rollup p99 < 0.5 s at 10k spans/s (bench_aggregator).
SPAN_BATCH_MESSAGES = 32
SCORE_BATCH_MESSAGES = 256
FETCH_TIMEOUT_SECONDS = 0.25
# Two span loops per process: one stores its batch while the other decodes and fetches.
SPAN_LOOPS = 2
SWEEP_SECONDS = 2.0
PARTITIONS_AHEAD_SECONDS = 3600.0
RETENTION_SECONDS = 3600.0


async def build(resources: Resources) -> Sequence[Component]:
    settings = resources.settings
    pool, bus = resources.pool, resources.bus
    assert pool is not None and bus is not None
    log.info("query_merge_path", c_accelerator=version_merge.ACCELERATED)
    partitions = Partitions()
    await partitions.load(pool)
    await partitions.ahead(pool)
    spans = SpanSink(pool, bus, partitions)
    scores = ScoreSink(pool, bus)

    def consumer(stream: str, durable: str, handle: BatchHandler, batch: int) -> Loop:
        async def loop(stopping: asyncio.Event) -> None:
            await run_pull_consumer(
                bus, stream, durable, handle, stopping, batch=batch, fetch_timeout=FETCH_TIMEOUT_SECONDS
            )

        return loop

    span_loop = consumer(bus.topology.spans_stream, Topology.AGGREGATOR_SPANS, spans.handle, SPAN_BATCH_MESSAGES)
    score_loop = consumer(bus.topology.scores_stream, Topology.AGGREGATOR_SCORES, scores.handle, SCORE_BATCH_MESSAGES)

    async def upkeep(stopping: asyncio.Event) -> None:
        """Settle scores whose span came late, count the runs whose root did not come within the settle
        window, and make tomorrow's partitions before they are needed."""
        since_partitions = 0.0
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), SWEEP_SECONDS)
            try:
                await scores.sweep()
                await settle_runs(pool, settings.run_settle_seconds)
                since_partitions += SWEEP_SECONDS
                if since_partitions >= PARTITIONS_AHEAD_SECONDS:
                    since_partitions = 0.0
                    await partitions.ahead(pool)
            except Exception as exc:  # Postgres away: try again at the next tick
                log.warning("upkeep_failed", error=str(exc))

    async def expire_runs(stopping: asyncio.Event) -> None:
        """Drop runs past the retention now, then every hour (one replica at a time)."""
        while not stopping.is_set():
            try:
                dropped = await retention.drop_expired(pool, settings.runs_retention_days)
                partitions.forget(retention.days_of(dropped or []))
            except Exception as exc:  # Postgres away or a lock not granted in time: the next round retries
                log.warning("retention_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RETENTION_SECONDS)

    async def answer_compares(stopping: asyncio.Event) -> None:
        await compare_responder.serve(pool, bus, stopping)

    async def find_regressions(stopping: asyncio.Event) -> None:
        await regressions.run(pool, bus, settings.regression_min_samples, settings.regression_margin, stopping)

    registry = RegistryLink(settings.registry_url)

    app = build_http_app(
        resources,
        [
            MetricsController,
            RunController,
            DecideController,
            ExperimentController,
            DatasetController,
            *project_routes(),
            *dashboard_routes(),
        ],
        title="Vane query API",
        dependencies={
            "pool": Provide(lambda: pool, use_cache=True, sync_to_thread=False),
            "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        },
    )
    # What start-up made (modules, pools, the app) lives as long as the process: out of the collector's
    # sight, a full collection walks only what requests made since (a metrics query makes ~40,000
    # objects; without this, some queries paid 80-100 ms of collection).
    gc.freeze()
    return [
        HttpServer(f"{NAME}-http", app, settings.bind_host, settings.aggregator_port),
        *(Worker(f"{NAME}-spans-{i}", span_loop) for i in range(SPAN_LOOPS)),
        Worker(f"{NAME}-scores", score_loop),
        Worker(f"{NAME}-upkeep", upkeep),
        Worker(f"{NAME}-retention", expire_runs),
        Worker(f"{NAME}-compare-responder", answer_compares),
        Worker(f"{NAME}-regressions", find_regressions),
    ]


def main() -> None:
    run_service(NAME, NEEDS, build)
