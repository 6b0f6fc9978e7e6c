"""Wires the registry service: its listeners and workers, in the order they start and stop.

A fetch goes: gRPC or HTTP edge (grpc_api, http_api) → caller's project (keys) → PromptRegistry
(registry) → this process's cache → Redis → Postgres (store). A write goes to Postgres, then
drops the caches and is announced on NATS (changes) to every replica and its watching SDKs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from litestar.di import Provide

from services.common.http import build_http_app, project_routes
from services.common.runtime import Component, GrpcServer, HttpServer, Needs, Resources, Worker, run_service
from services.common.workers import SharedPortHttpServer, WorkerProcesses, worker_index
from services.registry.cache import PromptCache
from services.registry.changes import ChangeFeed, Watchers
from services.registry.grpc_api import PromptServicer, build_server
from services.registry.http_api import PromptController
from services.registry.keys import Callers
from services.registry.keys_api import AuditController, KeyController
from services.registry.langfuse_api import LangfusePromptController
from services.registry.registry import PromptRegistry
from services.registry.rollout_worker import RolloutWorker
from services.registry.rollouts_api import RolloutController

NAME = "registry"
NEEDS = Needs(postgres=True, nats=True, redis=True, redis_required=False)


class WatchStreams:
    """Listed before the gRPC server: at shutdown, open WatchPrompts streams end first."""

    name = f"{NAME}-watch-streams"

    def __init__(self, watchers: Watchers) -> None:
        self._watchers = watchers

    async def start(self) -> None:
        pass

    async def stop(self, grace_seconds: float) -> None:
        self._watchers.close()

    def failed(self) -> BaseException | None:
        return None


async def build(resources: Resources) -> Sequence[Component]:
    settings = resources.settings
    assert resources.pool is not None and resources.bus is not None and resources.auth is not None
    cache = PromptCache(resources.redis, settings)
    watchers = Watchers()
    registry = PromptRegistry(resources.pool, cache, watchers)
    feed = ChangeFeed(resources.bus, registry.received)
    registry.feed = feed
    await feed.start()
    callers = Callers(resources.auth, registry, cache)
    bus = resources.bus

    app = build_http_app(
        resources,
        [
            PromptController,
            RolloutController,
            LangfusePromptController,
            KeyController,
            AuditController,
            *project_routes(),
        ],
        title="Vane prompt registry",
        dependencies={
            "registry": Provide(lambda: registry, sync_to_thread=False),
            "callers": Provide(lambda: callers, sync_to_thread=False),
            "bus": Provide(lambda: bus, sync_to_thread=False),
        },
        authenticate=callers.principal_for,
    )

    async def resync_after_reconnect(stopping: asyncio.Event) -> None:
        """Core NATS drops what is published while we are disconnected: after a reconnect, resync."""
        seen = feed.reconnects()
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)
            if feed.reconnects() != seen:
                seen = feed.reconnects()
                registry.resync()

    # Several processes share both ports; each keeps its caches coherent through the change feed.
    shared = settings.registry_workers > 1
    grpc_server = build_server(PromptServicer(registry, callers, watchers), shared_port=shared)
    http_class = SharedPortHttpServer if shared else HttpServer
    components: list[Component] = [
        WatchStreams(watchers),
        GrpcServer(f"{NAME}-grpc", grpc_server, settings.bind_host, settings.registry_grpc_port),
        http_class(f"{NAME}-http", app, settings.bind_host, settings.registry_http_port),
        Worker(f"{NAME}-resync", resync_after_reconnect),
        # Guarded rollouts: every process visits them; a row lock keeps each rollout to one at a time.
        Worker(f"{NAME}-rollouts", RolloutWorker(registry, resources.bus).run),
    ]
    if shared and worker_index(NAME) == 0:
        components.append(WorkerProcesses(settings.registry_workers, NAME))
    return components


def main() -> None:
    run_service(NAME, NEEDS, build)
