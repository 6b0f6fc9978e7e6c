"""The audit log against a real registry: prompt writes, label moves and key changes, each with the
public key that made it, newest first, one project's only; it needs the admin scope."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from services.common.auth import KeyPair, create_key, create_project
from services.common.scopes import Scope
from tests.conftest import Infra
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
def registry(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("registry", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


async def _client(registry: ServiceProcess, key: KeyPair) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=registry.url, headers={"Authorization": f"Bearer {key.secret_key}"}, timeout=10)


@pytest.fixture
async def admin(registry: ServiceProcess, pool: asyncpg.Pool) -> AsyncIterator[tuple[httpx.AsyncClient, KeyPair]]:
    async with pool.acquire() as conn:
        _, key = await create_project(conn, f"audit-{secrets.token_hex(4)}")
    async with await _client(registry, key) as client:
        yield client, key


async def test_prompt_writes_label_moves_and_key_changes_are_audited_with_their_key(
    admin: tuple[httpx.AsyncClient, KeyPair],
) -> None:
    api, key = admin
    assert (await api.post("/api/v1/prompts", json={"name": "reply", "prompt": "Hi {{who}}"})).status_code == 201
    assert (await api.post("/api/v1/prompts", json={"name": "reply", "prompt": "Hello {{who}}"})).status_code == 201
    moved = await api.patch("/api/v1/prompts/reply/versions/2", json={"labels": ["production"]})
    assert moved.status_code == 200
    split = await api.put(
        "/api/v1/prompts/reply/labels/production",
        json={"split": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]},
    )
    assert split.status_code == 200, split.text
    made = (await api.post("/api/v1/keys", json={"name": "ci", "scopes": ["read"]})).json()
    assert (await api.delete(f"/api/v1/keys/{made['public_key']}")).status_code == 200

    log = await api.get("/api/v1/audit")
    assert log.status_code == 200, log.text
    entries = log.json()["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("key.revoked", made["public_key"]),
        ("key.created", made["public_key"]),
        ("prompt.label_moved", "reply"),
        ("prompt.label_moved", "reply"),
        ("prompt.version_created", "reply"),
        ("prompt.version_created", "reply"),
    ]
    assert {e["actor"] for e in entries} == {key.public_key}
    assert entries[1]["details"] == {"name": "ci", "scopes": ["read"]}
    assert entries[2]["details"] == {
        "label": "production",
        "from": [{"version": 2, "weight": 100}],
        "to": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
    }
    assert entries[3]["details"] == {"label": "production", "from": [], "to": [{"version": 2, "weight": 100}]}
    assert entries[4]["details"] == {"version": 2}
    assert entries[0]["at"] >= entries[-1]["at"]


async def test_the_audit_log_pages_filters_and_keeps_to_its_project(
    admin: tuple[httpx.AsyncClient, KeyPair], registry: ServiceProcess, pool: asyncpg.Pool
) -> None:
    api, _ = admin
    for i in range(3):
        assert (await api.post("/api/v1/prompts", json={"name": f"p{i}", "prompt": "x"})).status_code == 201
    first = (await api.get("/api/v1/audit", params={"limit": 2})).json()
    assert [e["target"] for e in first["entries"]] == ["p2", "p1"]
    rest = (await api.get("/api/v1/audit", params={"limit": 2, "before": first["next_before"]})).json()
    assert [e["target"] for e in rest["entries"]] == ["p0"] and rest["next_before"] is None
    created = (await api.get("/api/v1/audit", params={"action": "prompt.version_created"})).json()["entries"]
    assert len(created) == 3
    assert (await api.get("/api/v1/audit", params={"limit": 0})).status_code == 400

    async with pool.acquire() as conn:
        other_project, other = await create_project(conn, f"audit-other-{secrets.token_hex(4)}")
        reader = await create_key(conn, other_project, "reader", frozenset({Scope.READ, Scope.WRITE}))
    async with await _client(registry, other) as other_api:
        assert (await other_api.get("/api/v1/audit")).json()["entries"] == []
    async with await _client(registry, reader) as reader_api:
        refused = await reader_api.get("/api/v1/audit")
        assert refused.status_code == 403 and refused.json()["error"]["details"]["required_scope"] == "admin"
