"""The registry's HTTP API against a real registry process, Postgres, Redis and NATS."""

from __future__ import annotations

import collections
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.common.auth import create_project
from tests.conftest import Infra, Project
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
def registry(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("registry", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


async def _project(pool: asyncpg.Pool) -> Project:
    name = f"project-{secrets.token_hex(4)}"
    async with pool.acquire() as conn:
        project_id, keys = await create_project(conn, name)
    return Project(project_id, name, keys)


@pytest.fixture
async def api(registry: ServiceProcess, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    project = await _project(pool)
    async with httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as client:
        client.project = project  # type: ignore[attr-defined]
        yield client


def _name() -> str:
    return f"support-reply-{secrets.token_hex(3)}"


async def _create(api: httpx.AsyncClient, name: str, prompt: Any = "Hello {{name}}", **extra: Any) -> dict[str, Any]:
    r = await api.post("/api/v1/prompts", json={"name": name, "prompt": prompt, **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_created_versions_number_from_one_and_latest_follows_the_newest(api: httpx.AsyncClient) -> None:
    name = _name()
    first = await _create(api, name, "Hi {{name}}, about {{ topic }}", config={"model": "gpt-4o", "max_tokens": 256})
    assert (first["version"], first["type"], first["labels"]) == (1, "text", ["latest"])
    assert first["variables"] == ["name", "topic"]
    assert first["config"] == {"model": "gpt-4o", "max_tokens": 256}
    second = await _create(api, name, "Hello {{name}}", commit_message="shorter", tags=["support"])
    assert (second["version"], second["labels"], second["tags"]) == (2, ["latest"], ["support"])
    latest = (await api.get(f"/api/v1/prompts/{name}", params={"label": "latest"})).json()
    assert latest["version"] == 2
    versions = (await api.get(f"/api/v1/prompts/{name}/versions")).json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["labels"] == []


async def test_fetch_without_label_or_version_serves_production(api: httpx.AsyncClient) -> None:
    name = _name()
    await _create(api, name, "one")
    await _create(api, name, "two")
    missing = await api.get(f"/api/v1/prompts/{name}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    moved = await api.patch(f"/api/v1/prompts/{name}/versions/1", json={"labels": ["production"]})
    assert moved.status_code == 200 and moved.json()["labels"] == ["production"]
    served = (await api.get(f"/api/v1/prompts/{name}")).json()
    assert (served["version"], served["prompt"], served["resolved_label"]) == (1, "one", "production")
    assert (await api.get(f"/api/v1/prompts/{name}", params={"version": 2})).json()["prompt"] == "two"
    assert (await api.get(f"/api/v1/prompts/{name}", params={"version": 9})).status_code == 404


async def test_a_label_is_on_one_version_and_setting_it_moves_it(api: httpx.AsyncClient) -> None:
    name = _name()
    await _create(api, name, "one", labels=["production", "staging"])
    await _create(api, name, "two")
    await api.patch(f"/api/v1/prompts/{name}/versions/2", json={"labels": ["production"]})
    versions = {
        v["version"]: v["labels"] for v in (await api.get(f"/api/v1/prompts/{name}/versions")).json()["versions"]
    }
    assert versions == {2: ["latest", "production"], 1: ["staging"]}
    listed = {p["name"]: p for p in (await api.get("/api/v1/prompts")).json()["prompts"]}
    assert listed[name]["versions"] == [
        {"version": 2, "labels": ["latest", "production"]},
        {"version": 1, "labels": ["staging"]},
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "", "prompt": "x"}, "non-empty"),
        ({"name": "a" * 256, "prompt": "x"}, "at most 255"),
        ({"name": "a|b", "prompt": "x"}, "'|'"),
        ({"name": "ok", "prompt": "x", "labels": ["Prod"]}, "must match"),
        ({"name": "ok", "prompt": "x", "labels": ["l" * 37]}, "at most 36"),
        ({"name": "ok", "prompt": "x", "labels": ["latest"]}, "maintained by the registry"),
        ({"name": "ok", "prompt": "x", "type": "image"}, "'text' or 'chat'"),
        ({"name": "ok", "prompt": [{"role": "user"}], "type": "chat"}, "role and content"),
        ({"name": "ok", "prompt": [{"type": "placeholder"}]}, "needs a name"),
        ({"name": "ok", "prompt": "x", "config": [1]}, "JSON object"),
    ],
)
async def test_rule_breaking_writes_are_refused_with_a_clear_400(
    api: httpx.AsyncClient, body: dict[str, Any], fragment: str
) -> None:
    r = await api.post("/api/v1/prompts", json=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"]


async def test_latest_cannot_be_moved_by_hand(api: httpx.AsyncClient) -> None:
    name = _name()
    await _create(api, name, "one")
    await _create(api, name, "two")
    r = await api.patch(f"/api/v1/prompts/{name}/versions/1", json={"labels": ["latest"]})
    assert r.status_code == 400 and "latest" in r.json()["error"]["message"]
    r = await api.patch(f"/api/v1/prompts/{name}/versions/7", json={"labels": ["production"]})
    assert r.status_code == 404


async def test_chat_prompt_keeps_messages_and_placeholders(api: httpx.AsyncClient) -> None:
    name = _name()
    chat = [
        {"role": "system", "content": "You help {{customer}}."},
        {"type": "placeholder", "name": "history"},
        {"role": "user", "content": "{{question}}"},
    ]
    created = await _create(api, name, chat, type="chat")
    assert created["type"] == "chat" and created["prompt"] == chat
    assert created["variables"] == ["customer", "question"]


async def test_diff_shows_prompt_and_config_lines(api: httpx.AsyncClient) -> None:
    name = _name()
    await _create(api, name, "Hello {{name}}\nBe brief.", config={"temperature": 0.2})
    await _create(api, name, "Hello {{name}}\nBe thorough.", config={"temperature": 0.7})
    diff = (await api.get(f"/api/v1/prompts/{name}/diff", params={"from": 1, "to": 2})).json()
    assert diff["changed"] is True
    assert "-Be brief." in diff["prompt"] and "+Be thorough." in diff["prompt"]
    assert '-  "temperature": 0.2' in diff["config"] and '+  "temperature": 0.7' in diff["config"]


async def test_label_history_records_each_move_with_the_key_and_rollback_goes_back(api: httpx.AsyncClient) -> None:
    name = _name()
    await _create(api, name, "one", labels=["production"])
    await _create(api, name, "two")
    await api.patch(f"/api/v1/prompts/{name}/versions/2", json={"labels": ["production"]})
    history = (await api.get(f"/api/v1/prompts/{name}/label-history")).json()["history"]
    production = [(h["from_version"], h["to_version"]) for h in history if h["label"] == "production"]
    assert production == [(None, 1), (1, 2)]
    assert {h["moved_by"] for h in history} == {api.project.keys.public_key}  # type: ignore[attr-defined]
    assert all(h["moved_at"].endswith("Z") for h in history)
    back = await api.post(f"/api/v1/prompts/{name}/labels/production/rollback")
    assert back.status_code == 200, back.text
    assert (await api.get(f"/api/v1/prompts/{name}")).json()["version"] == 1


async def test_split_label_serves_by_weight_and_sticky_keys_keep_their_version(api: httpx.AsyncClient) -> None:
    name = _name()
    await _create(api, name, "A")
    await _create(api, name, "B")
    split = [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
    r = await api.put(f"/api/v1/prompts/{name}/labels/production", json={"split": split})
    assert r.status_code == 200 and r.json()["split"] == split

    async def served(sticky_key: str | None = None) -> int:
        params = {"sticky_key": sticky_key} if sticky_key else {}
        return int((await api.get(f"/api/v1/prompts/{name}", params=params)).json()["version"])

    for user in ("ada", "grace", "alan"):
        assert len({await served(user) for _ in range(5)}) == 1
    sticky = collections.Counter([await served(f"user-{i}") for i in range(300)])
    assert 200 < sticky[1] < 295 and sticky[2] > 5
    drawn = collections.Counter([await served() for _ in range(200)])
    assert drawn[1] > drawn[2] > 0
    bad = await api.put(f"/api/v1/prompts/{name}/labels/production", json={"split": [{"version": 1, "weight": 0}]})
    assert bad.status_code == 400
    missing = await api.put(f"/api/v1/prompts/{name}/labels/production", json={"split": [{"version": 5, "weight": 1}]})
    assert missing.status_code == 404


async def test_removed_version_loses_its_labels_and_latest_steps_back(api: httpx.AsyncClient) -> None:
    name = _name()
    await _create(api, name, "one")
    await _create(api, name, "two", labels=["production"])
    assert (await api.delete(f"/api/v1/prompts/{name}/versions/2")).status_code == 204
    assert (await api.get(f"/api/v1/prompts/{name}")).status_code == 404
    assert (await api.get(f"/api/v1/prompts/{name}", params={"label": "latest"})).json()["version"] == 1
    third = await _create(api, name, "three")
    assert third["version"] == 3  # numbers are never given twice


async def test_another_projects_key_sees_404_and_no_key_401(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    name = _name()
    await _create(api, name, "secret", labels=["production"])
    other = await _project(pool)
    r = await api.get(f"/api/v1/prompts/{name}", headers=other.bearer)
    assert r.status_code == 404 and "secret" not in r.text
    assert name not in (await api.get("/api/v1/prompts", headers=other.bearer)).text
    assert (await api.get(f"/api/v1/prompts/{name}/versions", headers=other.bearer)).status_code == 404
    r = await api.patch(f"/api/v1/prompts/{name}/versions/1", json={"labels": ["x"]}, headers=other.bearer)
    assert r.status_code == 404
    anonymous = await api.get(f"/api/v1/prompts/{name}", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and "error" in anonymous.json()
