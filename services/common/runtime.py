"""A service's life: connect what it needs, refuse an unknown schema, start its listeners and
workers, and on SIGTERM stop taking work, finish what is in flight within a deadline, and exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import grpc
import redis.asyncio as aioredis
import uvicorn
from litestar import Litestar

from services.common import db
from services.common.auth import Authenticator, bootstrap_project
from services.common.bus import Bus, connect_bus
from services.common.cache import connect_redis
from services.common.health import Readiness
from services.common.logs import configure_logging, get_logger
from services.common.settings import Settings
from services.common.telemetry import configure_tracing

log = get_logger(component="runtime")


@dataclass(frozen=True)
class Needs:
    postgres: bool = True
    nats: bool = True
    redis: bool = False
    redis_required: bool = True  # False: the service answers without Redis, only degraded


@dataclass
class Resources:
    """The connections a service was given, shared by its components."""

    service: str
    settings: Settings
    readiness: Readiness
    stopping: asyncio.Event
    pool: asyncpg.Pool | None = None
    bus: Bus | None = None
    redis: aioredis.Redis | None = None
    auth: Authenticator | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Component(Protocol):
    """Something a service runs: a listener or a worker. Listeners are listed first, so that
    stopping in order stops taking work before in-flight work is finished."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, grace_seconds: float) -> None: ...

    def failed(self) -> BaseException | None: ...


class HttpServer:
    """Uvicorn serving a Litestar app inside the service's own event loop."""

    def __init__(self, name: str, app: Litestar, host: str, port: int) -> None:
        self.name = name
        self.app = app  # its route table, which the gateway's test reads
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
            http="httptools",
            timeout_graceful_shutdown=None,
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name=self.name)
        while not self._server.started:
            if self._task.done():
                raise RuntimeError(f"{self.name} could not start (is port {self._server.config.port} taken?)")
            await asyncio.sleep(0.02)

    async def stop(self, grace_seconds: float) -> None:
        self._server.should_exit = True
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
        except (TimeoutError, SystemExit):
            self._server.force_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 2)

    def failed(self) -> BaseException | None:
        if self._task is not None and self._task.done() and not self._server.should_exit:
            return self._task.exception() or RuntimeError(f"{self.name} stopped")
        return None


class _QuietServer(uvicorn.Server):
    """The runtime owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GrpcServer:
    def __init__(self, name: str, server: grpc.aio.Server, host: str, port: int) -> None:
        self.name = name
        self._server = server
        self._address = f"{host}:{port}"
        if server.add_insecure_port(self._address) == 0:
            raise RuntimeError(f"{name} could not bind {self._address}")

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace_seconds: float) -> None:
        await self._server.stop(grace_seconds)

    def failed(self) -> BaseException | None:
        return None


class Worker:
    """A loop that runs until `stopping` is set and then returns after finishing its batch."""

    def __init__(self, name: str, run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(self._stopping), name=self.name)

    async def stop(self, grace_seconds: float) -> None:
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_seconds)
        except TimeoutError:
            log.warning("worker_stop_deadline", worker=self.name)
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def failed(self) -> BaseException | None:
        if self._task is not None and self._task.done() and not self._stopping.is_set():
            if self._task.cancelled():
                return RuntimeError(f"{self.name} was cancelled")
            return self._task.exception() or RuntimeError(f"{self.name} returned early")
        return None


Build = Callable[[Resources], Awaitable[Sequence[Component]]]


async def _connect(service: str, settings: Settings, needs: Needs, stopping: asyncio.Event) -> Resources:
    resources = Resources(service=service, settings=settings, readiness=Readiness(), stopping=stopping)
    if needs.postgres:
        conn = await db.connect_with_retry(settings.database_url)
        try:
            await db.check_schema(conn)
            if settings.init_project:
                await bootstrap_project(conn, settings.init_project, settings.init_public_key, settings.init_secret_key)
        finally:
            await conn.close()
        pool = await db.create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
        resources.pool = pool
        resources.auth = Authenticator(pool)

        async def check_postgres() -> None:
            await pool.fetchval("SELECT 1", timeout=1.0)

        resources.readiness.add("postgres", check_postgres)
    if needs.nats:
        bus = await connect_bus(settings, service)
        resources.bus = bus
        if resources.auth is not None:
            await resources.auth.follow_revocations(bus)

        async def check_nats() -> None:
            if not bus.connected:
                raise ConnectionError("not connected")
            await bus.nc.flush(timeout=1)

        resources.readiness.add("nats", check_nats)
    if needs.redis:
        client = connect_redis(settings)
        resources.redis = client

        async def check_redis() -> None:
            await client.ping()

        resources.readiness.add("redis", check_redis, required=needs.redis_required)
    return resources


async def _close(resources: Resources) -> None:
    if resources.bus is not None:
        await resources.bus.close()
    if resources.redis is not None:
        with contextlib.suppress(Exception):
            await resources.redis.aclose()
    if resources.pool is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(resources.pool.close(), 5)


async def _serve(service: str, needs: Needs, build: Build) -> int:
    settings = Settings.from_env()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        resources = await _connect(service, settings, needs, stopping)
    except db.SchemaMismatch as exc:
        log.error("schema_mismatch", error=str(exc))
        print(f"vane {service}: {exc}", file=sys.stderr)
        return 2
    components: list[Component] = []
    try:
        for component in await build(resources):
            await component.start()
            components.append(component)
        log.info("service_ready", components=[c.name for c in components])
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)
            broken = next(((c, e) for c in components if (e := c.failed()) is not None), None)
            if broken is not None:
                log.error("component_failed", component=broken[0].name, error=repr(broken[1]))
                stopping.set()
                return_code = 1
                break
        else:
            return_code = 0
    except Exception as exc:
        log.exception("start_failed", error=str(exc))
        print(f"vane {service}: {exc}", file=sys.stderr)
        return_code = 1
    log.info("service_stopping", grace_seconds=settings.shutdown_grace_seconds)
    deadline = loop.time() + settings.shutdown_grace_seconds
    for component in components:
        await component.stop(max(0.1, deadline - loop.time()))
    await _close(resources)
    log.info("service_stopped")
    return return_code


def run_service(service: str, needs: Needs, build: Build) -> None:
    """The entry point of `vane serve <service>`: never returns."""
    settings = Settings.from_env()
    configure_logging(service, settings.log_level, settings.log_format)
    configure_tracing(service, settings)
    import uvloop

    sys.exit(uvloop.run(_serve(service, needs, build)))
