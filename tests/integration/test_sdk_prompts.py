"""The SDK's prompt client against real registry processes: cache, watch, fallback, writes."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import vane

from services.common.auth import create_project, new_key_pair
from tests.conftest import Infra, Project
from tests.support.processes import ServiceProcess

DEADLINE_SECONDS = 10.0


@pytest.fixture(scope="module")
def registry(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("registry", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


@pytest.fixture
async def project(pool: asyncpg.Pool) -> Project:
    name = f"sdk-{secrets.token_hex(4)}"
    async with pool.acquire() as conn:
        project_id, keys = await create_project(conn, name)
    return Project(project_id, name, keys)


@pytest.fixture
def clients() -> Iterator[Callable[..., vane.Vane]]:
    made: list[vane.Vane] = []

    def make(project: Project, registry: ServiceProcess | str) -> vane.Vane:
        address = registry if isinstance(registry, str) else f"127.0.0.1:{registry.grpc_port}"
        client = vane.Vane(secret_key=project.keys.secret_key, public_key=project.keys.public_key, registry=address)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _http(registry: ServiceProcess, project: Project) -> httpx.Client:
    return httpx.Client(base_url=registry.url, headers=project.bearer, timeout=10)


def eventually(check: Callable[[], Any], deadline: float = DEADLINE_SECONDS) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.02)


def test_get_prompt_serves_the_production_version_and_compiles(
    registry: ServiceProcess, project: Project, clients: Callable[..., vane.Vane]
) -> None:
    client = clients(project, registry)
    client.create_prompt("greet", "Hello {{name}}", config={"model": "gpt-4o", "max_tokens": 64}, labels=["production"])
    chat = [{"role": "system", "content": "Help {{name}}."}, {"type": "placeholder", "name": "history"}]
    client.create_prompt("chat", chat, labels=["production"])
    p = client.get_prompt("greet")
    assert (p.name, p.version, p.type, p.is_fallback) == ("greet", 1, "text", False)
    assert p.config == {"model": "gpt-4o", "max_tokens": 64} and isinstance(p.config["max_tokens"], int)
    assert p.labels == ("latest", "production") and p.variables == ("name",)
    assert p.compile(name="Ada") == "Hello Ada"
    c = client.get_prompt("chat", label="latest")
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert c.compile(name="Ada", history=history) == [{"role": "system", "content": "Help Ada."}, *history]
    assert client.get_prompt("greet") is p  # the second fetch is the cached object


def test_label_move_reaches_watching_sdk_without_a_refetch(
    registry: ServiceProcess, project: Project, clients: Callable[..., vane.Vane]
) -> None:
    client = clients(project, registry)
    client.create_prompt("reply", "v1", labels=["production"])
    client.create_prompt("reply", "v2")
    assert client.get_prompt("reply", cache_ttl_seconds=3600).version == 1
    assert client._prompt_watcher is not None and client._prompt_watcher.connected.wait(DEADLINE_SECONDS)
    with _http(registry, project) as http:
        assert http.patch("/api/v1/prompts/reply/versions/2", json={"labels": ["production"]}).status_code == 200
    assert eventually(lambda: client.get_prompt("reply", cache_ttl_seconds=3600).version == 2)


def test_removed_version_is_evicted_from_the_cache(
    registry: ServiceProcess, project: Project, clients: Callable[..., vane.Vane]
) -> None:
    client = clients(project, registry)
    client.create_prompt("temp", "v1")
    client.create_prompt("temp", "v2")
    assert client.get_prompt("temp", version=2, cache_ttl_seconds=3600).prompt == "v2"
    assert client._prompt_watcher is not None and client._prompt_watcher.connected.wait(DEADLINE_SECONDS)
    with _http(registry, project) as http:
        assert http.delete("/api/v1/prompts/temp/versions/2").status_code == 204
    assert eventually(lambda: ("temp", "", 2) not in client._prompt_entries)
    with pytest.raises(vane.PromptNotFound):
        client.get_prompt("temp", version=2)


def test_label_taken_away_is_evicted_from_the_cache(
    registry: ServiceProcess, project: Project, clients: Callable[..., vane.Vane]
) -> None:
    client = clients(project, registry)
    client.create_prompt("canaried", "v1", labels=["canary"])
    assert client.get_prompt("canaried", label="canary", cache_ttl_seconds=3600).version == 1
    assert client._prompt_watcher is not None and client._prompt_watcher.connected.wait(DEADLINE_SECONDS)
    with _http(registry, project) as http:
        assert http.delete("/api/v1/prompts/canaried/labels/canary").status_code == 204
    assert eventually(lambda: ("canaried", "canary", 0) not in client._prompt_entries)
    assert client.get_prompt("canaried", label="canary", fallback="fb").is_fallback


def test_split_label_gives_the_sdk_and_the_registry_the_same_version_per_sticky_key(
    registry: ServiceProcess, project: Project, clients: Callable[..., vane.Vane]
) -> None:
    client = clients(project, registry)
    client.create_prompt("ab", "A")
    client.create_prompt("ab", "B")
    assert client.set_label_split("ab", "production", {1: 50, 2: 50}) == {1: 50, 2: 50}
    with _http(registry, project) as http:
        for user in (f"user-{i}" for i in range(40)):
            server = http.get("/api/v1/prompts/ab", params={"sticky_key": user}).json()["version"]
            assert client.get_prompt("ab", sticky_key=user).version == server
    served = {client.get_prompt("ab").version for _ in range(200)}
    assert served == {1, 2}
    # a run records the label it was served by, whatever labels its version holds
    client.create_prompt("ab", "C", labels=["staging", "canary"])  # and "latest"
    assert {client.get_prompt("ab").label for _ in range(20)} == {"production"}
    assert client.get_prompt("ab", label="staging").label == "staging"
    assert client.get_prompt("ab", version=3).label is None


def test_sdk_writes_are_checked_by_the_registry(
    registry: ServiceProcess, project: Project, clients: Callable[..., vane.Vane]
) -> None:
    client = clients(project, registry)
    created = client.create_prompt("w", "x", labels=["staging"], tags=["t"], commit_message="first")
    assert (created.version, created.labels, created.tags, created.commit_message) == (
        1,
        ("latest", "staging"),
        ("t",),
        "first",
    )
    assert client.set_labels("w", 1, ["production"]).labels == ("latest", "production", "staging")
    with pytest.raises(vane.PromptRejected, match="maintained by the registry"):
        client.set_labels("w", 1, ["latest"])
    with pytest.raises(vane.PromptNotFound):
        client.set_labels("w", 5, ["production"])


async def test_aget_prompt_serves_async_apps(
    registry: ServiceProcess, project: Project, clients: Callable[..., vane.Vane]
) -> None:
    client = clients(project, registry)
    await asyncio.to_thread(client.create_prompt, "async", "hi {{x}}", labels=["production"])
    first = await client.aget_prompt("async")
    assert first.version == 1 and await client.aget_prompt("async") is first


def test_sdk_keeps_serving_when_the_registry_dies_and_a_fresh_sdk_gets_its_fallback(
    start_service: Callable[..., ServiceProcess], project: Project, clients: Callable[..., vane.Vane]
) -> None:
    own = start_service("registry")
    client = clients(project, own)
    client.create_prompt("resilient", "stored {{name}}", labels=["production"])
    assert client.get_prompt("resilient", cache_ttl_seconds=0.2).version == 1
    own.kill()
    time.sleep(0.3)  # past the TTL: the entry is stale and its refresh fails
    for _ in range(3):
        served = client.get_prompt("resilient", cache_ttl_seconds=0.2)
        assert (served.version, served.is_fallback) == (1, False)
    fresh = clients(project, own)
    fallback = fresh.get_prompt("resilient", fallback="Hello {{name}}")
    assert (fallback.version, fallback.is_fallback, fallback.compile(name="Ada")) == (0, True, "Hello Ada")
    with pytest.raises(vane.RegistryUnavailable, match=f"127.0.0.1:{own.grpc_port}"):
        fresh.get_prompt("resilient")


def test_unknown_key_is_refused_with_a_clear_error(registry: ServiceProcess, clients: Callable[..., vane.Vane]) -> None:
    stranger = Project(uuid.uuid4(), "nobody", new_key_pair())
    client = clients(stranger, registry)
    with pytest.raises(vane.PromptRejected, match="invalid API key"):
        client.get_prompt("anything")
