"""Fixtures shared by every test: the real NATS, Postgres and Redis, a database and a bus
namespace of this run's own, keys, and real service processes.

Where NATS, Postgres or Redis does not answer at the configured URL (a fresh machine), the run
starts embedded ones, as `vane up` does.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from services.common import db
from services.common.auth import KeyPair, create_project
from services.common.settings import Settings
from tests.support.processes import ServiceProcess
from tests.support.scratch import delete_redis_keys, delete_streams, drop_database, with_database


@dataclass(frozen=True)
class Infra:
    """This run's own database and namespace on the shared servers."""

    database_url: str
    nats_url: str
    redis_url: str
    namespace: str
    log_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "VANE_DATABASE_URL": self.database_url,
            "VANE_NATS_URL": self.nats_url,
            "VANE_REDIS_URL": self.redis_url,
            "VANE_NAMESPACE": self.namespace,
            "VANE_LOG_LEVEL": "info",
            "VANE_SHUTDOWN_GRACE_SECONDS": "5",
            # JetStream reserves max_bytes per stream up front: runs sharing one server must ask for little.
            "VANE_STREAM_MAX_BYTES": str(256 * 1024**2),
            **extra,
        }


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    settings = Settings.from_env()
    urls = {"postgres": settings.database_url, "nats": settings.nats_url, "redis": settings.redis_url}
    stack = None
    from services.cli import embedded

    missing = embedded.unreachable(settings)
    if missing:
        stack = embedded.EmbeddedStack(tmp_path_factory.mktemp("embedded"), settings)
        urls.update(stack.start(missing))
    token = secrets.token_hex(4)
    database_url = with_database(urls["postgres"], f"vane_test_{token}")
    asyncio.run(db.migrate(database_url))
    log_dir = tmp_path_factory.mktemp("logs")
    yield Infra(database_url, urls["nats"], urls["redis"], f"t{token}", log_dir)

    asyncio.run(drop_database(database_url))
    # Tests that make namespaces of their own derive them from the run's: the run's prefix finds them all.
    asyncio.run(delete_streams(urls["nats"], f"t{token}"))
    asyncio.run(delete_redis_keys(urls["redis"], f"t{token}"))
    if stack is not None:
        stack.stop()


@pytest.fixture(scope="session")
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(infra.database_url, 1, 5)
    yield p
    await p.close()


@dataclass(frozen=True)
class Project:
    id: uuid.UUID
    name: str
    keys: KeyPair

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.secret_key}"}


@pytest.fixture
async def make_project(pool: asyncpg.Pool) -> Callable[..., object]:
    async def make(name: str | None = None) -> Project:
        name = name or f"project-{secrets.token_hex(4)}"
        async with pool.acquire() as conn:
            project_id, keys = await create_project(conn, name)
        return Project(project_id, name, keys)

    return make


@pytest.fixture
def start_service(infra: Infra) -> Iterator[Callable[..., ServiceProcess]]:
    """Start `vane serve <name>` processes for one test; all are stopped after it."""
    started: list[ServiceProcess] = []

    def start(name: str, wait: bool = True, **env: str) -> ServiceProcess:
        proc = ServiceProcess(name, infra.env(**env), infra.log_dir)
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.kill()
