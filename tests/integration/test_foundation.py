"""The foundation through real `vane serve` processes: readiness, keys, tenancy, shutdown, schema
refusals, bootstrap races, and /readyz following NATS, Postgres and Redis as they go and come back."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.cli.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedRedis, free_port
from services.common import db
from services.common.auth import new_key_pair
from tests.conftest import Infra, Project
from tests.support.processes import REPO, ServiceProcess
from tests.support.scratch import drop_database, with_database

SERVICES = ("registry", "ingest", "evaluator", "aggregator", "alert")


def eventually(
    check: Callable[[], Any], timeout: float = 45.0, interval: float = 0.2, service: ServiceProcess | None = None
) -> Any:
    """Poll until check() returns something truthy; fail with the last value (and the log) at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    seen = readyz(service) if service is not None else None
    log = service.tail() if service is not None else ""
    raise AssertionError(f"not true after {timeout}s; last /readyz: {seen and seen.text}\n{log}")


def readyz(service: ServiceProcess) -> httpx.Response | None:
    try:
        return httpx.get(f"{service.url}/readyz", timeout=3.0)
    except httpx.HTTPError:
        return None


@pytest.fixture(scope="module")
def stack(infra: Infra) -> Iterator[dict[str, ServiceProcess]]:
    """All five services of one stack, started together and shared by the module's tests."""
    log_dir = infra.log_dir / "foundation"
    log_dir.mkdir(exist_ok=True)
    procs = {name: ServiceProcess(name, infra.env(), log_dir).start(wait=False) for name in SERVICES}
    try:
        for proc in procs.values():
            proc.wait_ready(90.0)
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()


async def test_all_five_services_reach_ready_with_their_dependencies(stack: dict[str, ServiceProcess]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for name, proc in stack.items():
            ready = await http.get(f"{proc.url}/readyz")
            assert ready.status_code == 200, (name, ready.text)
            assert {"postgres", "nats"} <= set(ready.json()["checks"]), name
            assert (await http.get(f"{proc.url}/healthz")).status_code == 200
            metrics = await http.get(f"{proc.url}/metrics")
            assert metrics.status_code == 200 and "# TYPE" in metrics.text


async def test_request_without_a_key_gets_401_with_an_error_body_on_every_service(
    stack: dict[str, ServiceProcess],
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for name, proc in stack.items():
            response = await http.get(f"{proc.url}/api/v1/projects/current")
            assert response.status_code == 401, name
            assert "error" in response.json(), name
            wrong = await http.get(f"{proc.url}/api/v1/projects/current", headers={"Authorization": "Bearer sk-vane-0"})
            assert wrong.status_code == 401, name


async def test_the_three_header_forms_authenticate_as_the_same_project(
    stack: dict[str, ServiceProcess], make_project: Callable[..., Any]
) -> None:
    project: Project = await make_project()
    keys = project.keys
    basic = base64.b64encode(f"{keys.public_key}:{keys.secret_key}".encode()).decode()
    forms = [
        {"Authorization": f"Bearer {keys.secret_key}"},
        {"Authorization": f"Basic {basic}"},
        {"X-Api-Key": keys.public_key, "X-Secret-Key": keys.secret_key},
    ]
    async with httpx.AsyncClient(timeout=5) as http:
        for proc in stack.values():
            for headers in forms:
                response = await http.get(f"{proc.url}/api/v1/projects/current", headers=headers)
                assert response.status_code == 200, (proc.service, headers, response.text)
                assert response.json()["id"] == str(project.id)


async def test_a_secret_paired_with_another_keys_public_key_gets_401(
    stack: dict[str, ServiceProcess], make_project: Callable[..., Any]
) -> None:
    a: Project = await make_project()
    b: Project = await make_project()
    basic = base64.b64encode(f"{b.keys.public_key}:{a.keys.secret_key}".encode()).decode()
    url = f"{stack['aggregator'].url}/api/v1/projects/current"
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(url, headers={"Authorization": f"Basic {basic}"})).status_code == 401
        mixed = {"X-Api-Key": b.keys.public_key, "X-Secret-Key": a.keys.secret_key}
        assert (await http.get(url, headers=mixed)).status_code == 401


async def test_one_projects_key_reading_another_project_gets_404_without_its_content(
    stack: dict[str, ServiceProcess], make_project: Callable[..., Any]
) -> None:
    a: Project = await make_project()
    b: Project = await make_project()
    base = stack["aggregator"].url
    async with httpx.AsyncClient(timeout=5) as http:
        own = await http.get(f"{base}/api/v1/projects/{a.id}", headers=a.bearer)
        assert own.status_code == 200 and own.json()["name"] == a.name
        other = await http.get(f"{base}/api/v1/projects/{b.id}", headers=a.bearer)
        assert other.status_code == 404
        assert b.name not in other.text


def test_vane_projects_create_prints_a_key_pair_that_works(stack: dict[str, ServiceProcess], infra: Infra) -> None:
    name = f"cli-{secrets.token_hex(4)}"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "projects", "create", name],
        env={**os.environ, **infra.env()},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    secret = re.search(r"secret key: (sk-vane-\S+)", done.stdout)
    assert secret is not None and re.search(r"public key: pk-vane-\S+", done.stdout), done.stdout
    response = httpx.get(
        f"{stack['registry'].url}/api/v1/projects/current", headers={"Authorization": f"Bearer {secret.group(1)}"}
    )
    assert response.status_code == 200 and response.json()["name"] == name
    again = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "projects", "create", name],
        env={**os.environ, **infra.env()},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode != 0 and "already exists" in again.stderr


def test_sigterm_stops_a_service_with_exit_code_0(start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service("alert", VANE_SHUTDOWN_GRACE_SECONDS="5")
    # terminate() waits at most this long, then kills (which would answer -9, not 0).
    assert service.terminate(timeout=30.0) == 0, service.tail()
    assert readyz(service) is None


# Schema refusals: an unmigrated database, and one migrated by a newer build.


@pytest.fixture
def scratch_database(infra: Infra) -> Iterator[str]:
    name = f"vane_scratch_{secrets.token_hex(4)}"
    url = with_database(infra.database_url, name)
    asyncio.run(db.ensure_database(url))
    yield url
    asyncio.run(drop_database(url))


def _refusal(start_service: Callable[..., ServiceProcess], database_url: str) -> tuple[int, str]:
    service = start_service("aggregator", wait=False, VANE_DATABASE_URL=database_url)
    assert service.proc is not None
    code = service.proc.wait(timeout=60)
    return code, service.tail()


def test_service_refuses_an_unmigrated_database_saying_to_migrate(
    start_service: Callable[..., ServiceProcess], scratch_database: str
) -> None:
    code, log = _refusal(start_service, scratch_database)
    assert code == 2, log
    assert "schema is at version 0" in log and "run `vane migrate` first" in log


def test_service_and_migrate_refuse_a_schema_newer_than_this_build(
    start_service: Callable[..., ServiceProcess], scratch_database: str, infra: Infra
) -> None:
    async def from_the_future() -> None:
        await db.migrate(scratch_database)
        conn = await asyncpg.connect(scratch_database)
        try:
            await conn.execute("INSERT INTO vane_schema_version (version, name) VALUES (9999, 'from_the_future')")
        finally:
            await conn.close()

    asyncio.run(from_the_future())
    code, log = _refusal(start_service, scratch_database)
    assert code == 2, log
    assert "schema is at version 9999, newer than this build knows" in log
    migrate = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "migrate"],
        env={**os.environ, **infra.env(VANE_DATABASE_URL=scratch_database)},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode != 0 and "[9999]" in migrate.stderr and "does not know" in migrate.stderr


# Bootstrap from VANE_INIT_*.


async def test_init_project_bootstrap_is_idempotent_when_three_replicas_start_at_once(
    start_service: Callable[..., ServiceProcess], pool: asyncpg.Pool
) -> None:
    name, keys = f"boot-{secrets.token_hex(4)}", new_key_pair()
    init = {"VANE_INIT_PROJECT": name, "VANE_INIT_PUBLIC_KEY": keys.public_key, "VANE_INIT_SECRET_KEY": keys.secret_key}
    replicas = [start_service("alert", wait=False, **init) for _ in range(3)]
    for replica in replicas:
        await asyncio.to_thread(replica.wait_ready, 90.0)
    assert await pool.fetchval("SELECT count(*) FROM projects WHERE name = $1", name) == 1
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE public_key = $1", keys.public_key) == 1
    async with httpx.AsyncClient(timeout=5) as http:
        for replica in replicas:
            headers = {"Authorization": f"Bearer {keys.secret_key}"}
            response = await http.get(f"{replica.url}/api/v1/projects/current", headers=headers)
            assert response.status_code == 200 and response.json()["name"] == name
    await asyncio.to_thread(replicas[0].restart)
    assert await pool.fetchval("SELECT count(*) FROM projects WHERE name = $1", name) == 1


# /readyz follows each dependency: dedicated servers of this test's own, stopped and started again.


def _not_ready_naming(service: ServiceProcess, dependency: str) -> Callable[[], bool]:
    def check() -> bool:
        r = readyz(service)
        return r is not None and r.status_code == 503 and dependency in r.json().get("error", "")

    return check


def _ready(service: ServiceProcess) -> Callable[[], bool]:
    def check() -> bool:
        r = readyz(service)
        return r is not None and r.status_code == 200 and r.json()["status"] == "ready"

    return check


def test_readyz_turns_503_naming_nats_while_it_is_down_and_200_when_it_returns(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    nats = EmbeddedNats(tmp_path / "nats", free_port()).start()
    try:
        service = start_service("aggregator", VANE_NATS_URL=nats.url)
        nats.stop()
        eventually(_not_ready_naming(service, "nats"), service=service)
        nats.start()
        eventually(_ready(service), service=service)
    finally:
        nats.stop()


async def test_readyz_turns_503_naming_postgres_while_it_is_down_and_200_when_it_returns(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    postgres = await asyncio.to_thread(EmbeddedPostgres(tmp_path / "postgres", free_port()).start)
    try:
        url = with_database(postgres.url, "vane")
        await db.migrate(url)
        service = await asyncio.to_thread(start_service, "aggregator", VANE_DATABASE_URL=url)
        await asyncio.to_thread(postgres.stop)
        await asyncio.to_thread(eventually, _not_ready_naming(service, "postgres"), 45.0, 0.2, service)
        await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(eventually, _ready(service), 45.0, 0.2, service)
    finally:
        postgres.stop()
        postgres.discard()


def test_registry_reports_degraded_without_redis_and_ready_when_it_returns(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", free_port()).start()
    try:
        registry = start_service("registry", VANE_REDIS_URL=redis.url)
        redis.stop()

        def degraded() -> bool:
            r = readyz(registry)
            body = r.json() if r is not None else {}
            # The registry answers from Postgres without Redis: still 200, but it says so.
            return (
                r is not None
                and r.status_code == 200
                and body.get("status") == "degraded"
                and (body["checks"]["redis"].startswith("down"))
            )

        eventually(degraded, service=registry)
        redis.start()
        eventually(_ready(registry), service=registry)
    finally:
        redis.stop()
