"""The TypeScript SDK (sdk/js) against real registry, ingest and aggregator processes: installed
from its lock file, built with tsc --strict (ES module and CommonJS), its own Node tests, then the
Python SDK's prompt tests in TypeScript (a label, a label move reaching a watching client, the
registry killed, the fallback) and a traced generation counted by the aggregator on its prompt
version and app version, with its tokens and score."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from services.common.auth import create_project
from services.common.settings import Settings
from tests.conftest import Infra, Project
from tests.support.aggregator_load import STREAM_MAX_BYTES, bus_for, drop_streams
from tests.support.node_sdk import SDK_JS, NodeDriver, build_sdk, pack_listing, run_node_tests
from tests.support.processes import ServiceProcess

DEADLINE_SECONDS = 30.0


@dataclass(frozen=True)
class Stack:
    registry: ServiceProcess
    ingest: ServiceProcess
    aggregator: ServiceProcess
    env: dict[str, str]


@pytest.fixture(scope="module")
def sdk_js() -> None:
    build_sdk()


@pytest.fixture(scope="module")
def stack(infra: Infra, sdk_js: None) -> Iterator[Stack]:
    """The three services on a namespace of this module's own, so the aggregator counts only our spans."""
    namespace = f"{infra.namespace}js{secrets.token_hex(3)}"
    env = infra.env(VANE_NAMESPACE=namespace, VANE_STREAM_MAX_BYTES=str(STREAM_MAX_BYTES))
    procs = [
        ServiceProcess(name, env, infra.log_dir).start(wait=False) for name in ("registry", "ingest", "aggregator")
    ]
    try:
        for proc in procs:
            proc.wait_ready()
        yield Stack(*procs, env=env)
    finally:
        for proc in procs:
            proc.kill()

        async def drop() -> None:
            bus = await bus_for(Settings.from_env(), infra.nats_url, namespace)
            await drop_streams(bus)
            await bus.close()

        asyncio.run(drop())


@pytest.fixture
async def project(pool: asyncpg.Pool) -> Project:
    name = f"sdk-js-{secrets.token_hex(4)}"
    async with pool.acquire() as conn:
        project_id, keys = await create_project(conn, name)
    return Project(project_id, name, keys)


@pytest.fixture
def node() -> Iterator[Callable[..., NodeDriver]]:
    drivers: list[NodeDriver] = []

    def start(**env: str) -> NodeDriver:
        driver = NodeDriver(env)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.close()


def _create(registry: ServiceProcess, project: Project, name: str, prompt: Any, **extra: Any) -> int:
    r = httpx.post(
        f"{registry.url}/api/v1/prompts", json={"name": name, "prompt": prompt, **extra}, headers=project.bearer
    )
    assert r.status_code == 201, r.text
    return int(r.json()["version"])


def _client_env(stack: Stack, project: Project, registry: ServiceProcess | None = None) -> dict[str, str]:
    return {
        "VANE_SECRET_KEY": project.keys.secret_key,
        "VANE_REGISTRY": f"127.0.0.1:{(registry or stack.registry).grpc_port}",
        "VANE_OTLP_ENDPOINT": stack.ingest.url,
        "VANE_API_URL": stack.ingest.url,
    }


def test_node_tests_of_the_sdk_pass_on_its_esm_and_commonjs_builds(sdk_js: None) -> None:
    result = run_node_tests()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_npm_pack_ships_typed_esm_and_commonjs_entry_points(sdk_js: None) -> None:
    [packed] = json.loads(pack_listing())
    files = {f["path"] for f in packed["files"]}
    for build in ("esm", "cjs"):
        assert {f"dist/{build}/index.js", f"dist/{build}/index.d.ts", f"dist/{build}/package.json"} <= files
    manifest = json.loads((SDK_JS / "package.json").read_text())
    assert all(d.startswith(("@grpc/", "@opentelemetry/")) for d in manifest["dependencies"])
    assert manifest["exports"]["."]["require"]["default"] == "./dist/cjs/index.js"
    assert manifest["exports"]["."]["import"]["default"] == "./dist/esm/index.js"


def test_get_prompt_by_label_compiles_and_serves_the_cached_object(
    stack: Stack, project: Project, node: Callable[..., NodeDriver]
) -> None:
    _create(stack.registry, project, "greet", "Hello {{name}}", config={"model": "gpt-4o", "max_tokens": 64})
    _create(stack.registry, project, "greet", "Hi {{ name }}!", labels=["production"])
    chat = [{"role": "system", "content": "Help {{name}}."}, {"type": "placeholder", "name": "history"}]
    _create(stack.registry, project, "chat", chat, labels=["production"])
    js = node(**_client_env(stack, project))
    js.call("client")
    p = js.call("get", name="greet", options={"label": "production"}, compile={"name": "Ada"})
    assert (p["name"], p["version"], p["type"], p["isFallback"], p["compiled"]) == (
        "greet",
        2,
        "text",
        False,
        "Hi Ada!",
    )
    assert (p["labels"], p["variables"], p["label"]) == (["latest", "production"], ["name"], "production")
    assert js.call("get", name="greet")["same"]  # no label serves production, from the cache: the same object
    first = js.call("get", name="greet", options={"version": 1}, compile={"name": "Ada"})
    assert (first["version"], first["config"], first["compiled"]) == (
        1,
        {"model": "gpt-4o", "max_tokens": 64},
        "Hello Ada",
    )
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    c = js.call("get", name="chat", options={"label": "latest"}, compile={"name": "Ada", "history": history})
    assert c["compiled"] == [{"role": "system", "content": "Help Ada."}, *history]
    missing = js.call("get", name="nope")
    assert missing["error"] == "PromptNotFound"


def test_label_move_reaches_the_watching_js_client_without_a_refetch(
    stack: Stack, project: Project, node: Callable[..., NodeDriver]
) -> None:
    _create(stack.registry, project, "reply", "v1", labels=["production"])
    _create(stack.registry, project, "reply", "v2")
    js = node(**_client_env(stack, project))
    js.call("client")
    ttl = {"cacheTtlSeconds": 3600}
    assert js.call("get", name="reply", options=ttl)["version"] == 1
    assert js.call("watching") == {"watching": True}
    r = httpx.patch(
        f"{stack.registry.url}/api/v1/prompts/reply/versions/2", json={"labels": ["production"]}, headers=project.bearer
    )
    assert r.status_code == 200, r.text
    moved = js.call("until", name="reply", options=ttl, version=2, timeoutMs=DEADLINE_SECONDS * 1000)
    assert moved.get("timedOut") is None and moved["version"] == 2


def test_js_client_keeps_serving_when_the_registry_dies_and_a_fresh_one_gets_its_fallback(
    stack: Stack, start_service: Callable[..., ServiceProcess], project: Project, node: Callable[..., NodeDriver]
) -> None:
    own = start_service("registry", **stack.env)
    _create(own, project, "resilient", "stored {{name}}", labels=["production"])
    js = node(**_client_env(stack, project, own))
    js.call("client")
    short = {"cacheTtlSeconds": 0.2}
    assert js.call("get", name="resilient", options=short)["version"] == 1
    own.kill()
    time.sleep(0.3)  # past the TTL: the entry is stale and its refresh fails
    for _ in range(3):
        served = js.call("get", name="resilient", options=short)
        assert (served["version"], served["isFallback"]) == (1, False)
    js.call("client", name="fresh")
    fallback = js.call(
        "get", client="fresh", name="resilient", options={"fallback": "Hello {{name}}"}, compile={"name": "Ada"}
    )
    assert (fallback["version"], fallback["isFallback"], fallback["compiled"]) == (0, True, "Hello Ada")
    refused = js.call("get", client="fresh", name="resilient")
    assert refused["error"] == "RegistryUnavailable" and f"127.0.0.1:{own.grpc_port}" in refused["message"]


def test_js_writes_are_checked_by_the_registry(stack: Stack, project: Project, node: Callable[..., NodeDriver]) -> None:
    js = node(**_client_env(stack, project))
    js.call("client")
    created = js.call(
        "create",
        name="w",
        prompt="x {{y}}",
        options={"labels": ["staging"], "config": {"n": 1}, "commitMessage": "first"},
    )
    assert (created["version"], created["labels"], created["config"], created["variables"]) == (
        1,
        ["latest", "staging"],
        {"n": 1},
        ["y"],
    )
    chat = [{"role": "system", "content": "Be {{tone}}"}, {"type": "placeholder", "name": "history"}]
    assert js.call("create", name="w", prompt=chat)["prompt"] == chat
    moved = js.call("setLabels", name="w", version=1, labels=["production"])
    assert moved["labels"] == ["production", "staging"]
    refused = js.call("setLabels", name="w", version=1, labels=["latest"])
    assert refused["error"] == "PromptRejected" and "maintained by the registry" in refused["message"]
    assert js.call("setLabels", name="w", version=5, labels=["production"])["error"] == "PromptNotFound"


def test_split_label_gives_the_js_sdk_and_the_registry_the_same_version_per_sticky_key(
    stack: Stack, project: Project, node: Callable[..., NodeDriver]
) -> None:
    js = node(**_client_env(stack, project))
    js.call("client")
    js.call("create", name="ab", prompt="A")
    js.call("create", name="ab", prompt="B")
    assert js.call("setLabelSplit", name="ab", label="production", weights={"1": 50, "2": 50}) == {
        "split": {"1": 50, "2": 50}
    }
    users = [f"user-{i}" for i in range(40)]
    drawn = js.call("draws", name="ab", stickyKeys=users, draws=200)
    with httpx.Client(base_url=stack.registry.url, headers=project.bearer, timeout=10) as http:
        served = [http.get("/api/v1/prompts/ab", params={"sticky_key": u}).json()["version"] for u in users]
    assert drawn["sticky"] == served and set(served) == {1, 2}
    assert drawn["random"] == [1, 2]


def test_unknown_key_is_refused_with_a_clear_error(
    stack: Stack, project: Project, node: Callable[..., NodeDriver]
) -> None:
    js = node(**{**_client_env(stack, project), "VANE_SECRET_KEY": "sk-vane-nobody"})
    js.call("client")
    refused = js.call("get", name="anything")
    assert (refused["error"], "invalid API key" in refused["message"]) == ("PromptRejected", True)


def test_generations_traced_by_the_js_sdk_are_counted_on_their_prompt_and_app_version_with_tokens_and_score(
    stack: Stack, project: Project, node: Callable[..., NodeDriver]
) -> None:
    _create(stack.registry, project, "support-reply", "Answer {{name}}", labels=["production"])
    js = node(**_client_env(stack, project))
    js.call("register", options={"projectName": "js-bot", "projectVersionName": "js-v1"})
    js.call("client")
    assert js.call("get", name="support-reply", options={"label": "production"})["version"] == 1
    linked = js.call(
        "generation",
        name="reply",
        model="gpt-4o",
        prompt="support-reply",
        input=[{"role": "user", "content": "Hi"}],
        output="Hello!",
        usage={"inputTokens": 812, "outputTokens": 96},
        firstToken=True,
    )
    js.call("client", name="cut-off", options={"registry": "127.0.0.1:9"})
    offline = js.call("get", client="cut-off", name="support-reply", options={"fallback": "Hi"}, keep="offline")
    assert offline["isFallback"]
    js.call("generation", name="reply", model="gpt-4o", prompt="offline", usage={"inputTokens": 100})
    assert js.call(
        "observed", name="answer", model="gpt-4o-mini", input="why?", output="re:", usage={"inputTokens": 10}
    )
    score = {"traceId": linked["traceId"], "spanId": linked["spanId"], "name": "helpfulness", "value": 4}
    assert "id" in js.call("score", options={**score, "source": "annotation"})
    assert "400" in js.call("score", options={"traceId": "nope", "name": "x", "value": 1})["message"]
    assert js.call("flush") == {"flushed": True}

    with httpx.Client(base_url=stack.aggregator.url, headers=project.bearer, timeout=10) as http:

        def rows() -> tuple[dict[str, Any], dict[str, Any]] | None:
            prompt_rows = http.get("/api/v1/prompts/support-reply/metrics").json()["versions"]
            app_rows = http.get("/api/v1/versions/metrics", params={"project_name": "js-bot"}).json()["versions"]
            if len(prompt_rows) != 1 or len(app_rows) != 1 or app_rows[0]["generation_count"] < 3:
                return None
            if prompt_rows[0]["scores"].get("helpfulness", {}).get("count", 0) < 1:
                return None
            return prompt_rows[0], app_rows[0]

        deadline = time.monotonic() + DEADLINE_SECONDS
        found = rows()
        while found is None and time.monotonic() < deadline:
            time.sleep(0.25)
            found = rows()
        assert found is not None, http.get("/api/v1/versions/metrics").text
    by_prompt, by_app = found
    assert (by_prompt["version"], by_prompt["generation_count"]) == (1, 1)  # the fallback's call links nothing
    assert (by_prompt["total_input_tokens"], by_prompt["total_output_tokens"]) == (812, 96)
    assert by_prompt["median_ttft_ms"] is not None and by_prompt["median_ttft_ms"] > 0
    assert by_prompt["scores"]["helpfulness"]["count"] == 1 and by_prompt["scores"]["helpfulness"]["median"] == 4
    assert (by_app["version"], by_app["project_name"], by_app["generation_count"]) == ("js-v1", "js-bot", 3)
    assert by_app["total_input_tokens"] == 812 + 100 + 10
