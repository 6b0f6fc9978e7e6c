"""Scoped keys against the five real services: every route of every OpenAPI document and every gRPC
method refuses a key without its scope (403 / PERMISSION_DENIED naming it) and lets one with only
that scope through; keys are made, listed and revoked through the registry, and a revoked key
stops working in every other process."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from vane.v1 import prompts_pb2 as pb

from services.common import db
from services.common.auth import KeyPair, create_key, create_project
from services.common.scopes import GRPC_SCOPES, Scope, http_scope
from tests.conftest import Infra
from tests.support.processes import REPO, ServiceProcess

SERVICES = ("registry", "ingest", "evaluator", "aggregator", "alert")
REVOCATION_DEADLINE_SECONDS = 10.0

# The policy, stated a second time on purpose: a route whose scope the table decides differently
# from what is written here fails the test. Routes not listed need `read` to read, `write` to write.
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}
EXPECTED_SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/v1/traces"): Scope.INGEST,
    ("POST", "/api/public/otel/v1/traces"): Scope.INGEST,
    ("POST", "/tracer/v1/traces"): Scope.INGEST,
    ("POST", "/api/v1/scores"): Scope.INGEST,
    ("POST", "/api/public/scores"): Scope.INGEST,
    ("POST", "/api/public/ingestion"): Scope.INGEST,
    ("POST", "/v1/logs"): Scope.INGEST,
    ("POST", "/api/public/otel/v1/logs"): Scope.INGEST,
    ("POST", "/tracer/custom-eval-config/check_exists"): Scope.INGEST,
    ("POST", "/tracer/custom-eval-config/get_custom_eval_by_name"): Scope.INGEST,
    ("POST", "/api/v1/keys"): Scope.ADMIN,
    ("GET", "/api/v1/keys"): Scope.ADMIN,
    ("DELETE", "/api/v1/keys/{public_key}"): Scope.ADMIN,
    ("GET", "/api/v1/audit"): Scope.ADMIN,
    ("POST", "/api/v1/winner"): Scope.READ,
}


def expected_scope(method: str, template: str) -> Scope | None:
    if template in OPEN_PATHS:
        return None
    if (method, template) in EXPECTED_SCOPES:
        return EXPECTED_SCOPES[(method, template)]
    return Scope.READ if method in ("GET", "HEAD") else Scope.WRITE


@dataclass(frozen=True)
class Keys:
    """One project's keys: one per scope alone, and one per scope holding every scope but it."""

    project_id: uuid.UUID
    only: dict[Scope, KeyPair]
    all_but: dict[Scope, KeyPair]
    admin_all: KeyPair


@pytest.fixture(scope="module")
def services(infra: Infra) -> Iterator[dict[str, ServiceProcess]]:
    procs = {name: ServiceProcess(name, infra.env(), infra.log_dir) for name in SERVICES}
    try:
        for proc in procs.values():
            proc.start(wait=False)
        for proc in procs.values():
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()


@pytest.fixture(scope="module")
async def keys(pool: asyncpg.Pool) -> Keys:
    async with pool.acquire() as conn:
        project_id, first = await create_project(conn, f"scopes-{secrets.token_hex(4)}")
        only = {s: await create_key(conn, project_id, f"only-{s}", frozenset({s})) for s in Scope}
        all_but = {s: await create_key(conn, project_id, f"not-{s}", frozenset(Scope) - {s}) for s in Scope}
    return Keys(project_id, only, all_but, first)


def bearer(key: KeyPair) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret_key}"}


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    template: str
    path: str  # the template with its parameters filled


def _routes(service: str, base_url: str) -> list[Route]:
    document = httpx.get(f"{base_url}/schema/openapi.json", timeout=10).json()
    routes = []
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
                continue
            path = template
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                schema = parameter.get("schema", {})
                value = (
                    str(uuid.uuid4())
                    if schema.get("format") == "uuid"
                    else "1"
                    if schema.get("type") == "integer"
                    else "scope-probe"
                )
                path = path.replace("{" + parameter["name"] + "}", value)
            routes.append(Route(service, method.upper(), template, path))
    return routes


@pytest.fixture(scope="module")
def routes(services: dict[str, ServiceProcess]) -> list[Route]:
    found = [route for name, proc in services.items() for route in _routes(name, proc.url)]
    assert {r.service for r in found} == set(SERVICES)
    return found


def test_the_scope_table_decides_every_documented_route_as_the_policy_says(routes: list[Route]) -> None:
    wrong = [
        (r.service, r.method, r.template, http_scope(r.method, r.path), expected_scope(r.method, r.template))
        for r in routes
        if http_scope(r.method, r.path) != expected_scope(r.method, r.template)
    ]
    assert not wrong
    # the routes the contract names are among those documented
    documented = {(r.method, r.template) for r in routes}
    for named in [("POST", "/api/v1/keys"), ("GET", "/api/v1/audit"), ("POST", "/v1/traces"), ("GET", "/api/v1/runs")]:
        assert named in documented


async def test_probes_metrics_and_the_openapi_document_need_no_key(services: dict[str, ServiceProcess]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for proc in services.values():
            for path in ("/healthz", "/readyz", "/metrics", "/schema/openapi.json"):
                r = await client.get(proc.url + path)
                assert r.status_code == 200, (proc.service, path, r.text)


async def test_every_route_refuses_a_key_without_its_scope_and_takes_one_with_it(
    services: dict[str, ServiceProcess], routes: list[Route], keys: Keys
) -> None:
    failures: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for route in routes:
            url = services[route.service].url + route.path
            needed = http_scope(route.method, route.path)

            async def call(headers: dict[str, str], url: str = url, route: Route = route) -> httpx.Response:
                body = {} if route.method in ("POST", "PUT", "PATCH") else None
                return await client.request(route.method, url, headers=headers, json=body)

            if needed is None:
                r = await call({})
                if r.status_code in (401, 403):
                    failures.append(f"{route}: open route answered {r.status_code}")
                continue
            r = await call({})
            if r.status_code != 401:
                failures.append(f"{route}: without a key answered {r.status_code}")
            refused = await call(bearer(keys.all_but[needed]))
            if refused.status_code != 403:
                failures.append(f"{route}: a key without {needed} answered {refused.status_code}")
            elif needed.value not in refused.json()["error"]["message"]:
                failures.append(f"{route}: the 403 does not name {needed}: {refused.text}")
            allowed = await call(bearer(keys.only[needed]))
            if allowed.status_code in (401, 403):
                failures.append(f"{route}: a key with only {needed} answered {allowed.status_code}: {allowed.text}")
    assert not failures, "\n".join(failures)


async def _grpc_call(channel: grpc.aio.Channel, method: str, key: KeyPair) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {key.secret_key}"),)
    request = pb.GetPromptRequest(name="scope-probe").SerializeToString() if "Prompt" in method else b""
    try:
        if method.endswith("/WatchPrompts"):
            stream = channel.unary_stream(method)(request, metadata=metadata, timeout=5)
            async for _ in stream:
                stream.cancel()
                break
        else:
            await channel.unary_unary(method)(request, metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_every_grpc_method_refuses_a_key_without_its_scope(
    services: dict[str, ServiceProcess], keys: Keys
) -> None:
    prompt_service = pb.DESCRIPTOR.services_by_name["PromptService"]
    trace_service = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]
    served = {
        "registry": [f"/{prompt_service.full_name}/{m.name}" for m in prompt_service.methods],
        "ingest": [f"/{trace_service.full_name}/{m.name}" for m in trace_service.methods],
    }
    assert {m for methods in served.values() for m in methods} == set(GRPC_SCOPES)
    failures = []
    for service, methods in served.items():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{services[service].grpc_port}") as channel:
            for method in methods:
                needed = GRPC_SCOPES[method]
                refused = await _grpc_call(channel, method, keys.all_but[needed])
                allowed = await _grpc_call(channel, method, keys.only[needed])
                if refused != grpc.StatusCode.PERMISSION_DENIED:
                    failures.append(f"{method}: a key without {needed} got {refused}")
                if allowed in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    failures.append(f"{method}: a key with {needed} got {allowed}")
    assert not failures, "\n".join(failures)


async def test_the_grpc_refusal_names_the_missing_scope(services: dict[str, ServiceProcess], keys: Keys) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{services['registry'].grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/vane.v1.PromptService/GetPrompt")(
                pb.GetPromptRequest(name="x").SerializeToString(),
                metadata=(("authorization", f"Bearer {keys.only[Scope.INGEST].secret_key}"),),
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert json.loads(caught.value.details() or "{}")["error"]["details"]["required_scope"] == "read"


@pytest.fixture
async def registry_api(services: dict[str, ServiceProcess], keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=services["registry"].url, headers=bearer(keys.admin_all), timeout=10) as c:
        yield c


async def test_a_key_made_by_the_api_has_its_scopes_and_its_secret_is_shown_once(
    registry_api: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    made = await registry_api.post("/api/v1/keys", json={"name": "checkout-app", "scopes": ["ingest"]})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["scopes"] == ["ingest"]
    assert body["public_key"].startswith("pk-vane-") and body["secret_key"].startswith("sk-vane-")
    listed = (await registry_api.get("/api/v1/keys")).json()["keys"]
    mine = next(k for k in listed if k["public_key"] == body["public_key"])
    assert mine["name"] == "checkout-app" and mine["scopes"] == ["ingest"] and mine["revoked_at"] is None
    assert body["secret_key"] not in json.dumps(listed)
    app_key = {"Authorization": f"Bearer {body['secret_key']}"}
    async with httpx.AsyncClient(timeout=10) as client:
        score = {"trace_id": secrets.token_hex(16), "name": "helpful", "value": 1}
        sent = await client.post(f"{services['ingest'].url}/api/v1/scores", json=score, headers=app_key)
        assert sent.status_code == 202, sent.text
        read = await client.get(f"{services['aggregator'].url}/api/v1/runs", headers=app_key)
        assert read.status_code == 403 and read.json()["error"]["details"]["required_scope"] == "read"
        move = await client.patch(
            f"{services['registry'].url}/api/v1/prompts/p/versions/1", json={"labels": ["production"]}, headers=app_key
        )
        assert move.status_code == 403 and "write" in move.json()["error"]["message"]


async def test_key_requests_are_checked(registry_api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    for body in [{"name": "x"}, {"name": "x", "scopes": []}, {"name": "x", "scopes": ["root"]}]:
        r = await registry_api.post("/api/v1/keys", json=body)
        assert r.status_code == 400, (body, r.text)
    async with pool.acquire() as conn:
        _, other = await create_project(conn, f"other-{secrets.token_hex(4)}")
    r = await registry_api.delete(f"/api/v1/keys/{other.public_key}")
    assert r.status_code == 404
    assert all(k["public_key"] != other.public_key for k in (await registry_api.get("/api/v1/keys")).json()["keys"])


async def _status_until(client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], want: int) -> int:
    deadline = time.monotonic() + REVOCATION_DEADLINE_SECONDS
    while True:
        status = (await client.request(method, url, headers=headers, json={} if method == "POST" else None)).status_code
        if status == want or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


async def test_a_revoked_key_stops_working_in_every_service(
    registry_api: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    made = (await registry_api.post("/api/v1/keys", json={"name": "leaked", "scopes": ["ingest", "read"]})).json()
    leaked = {"Authorization": f"Bearer {made['secret_key']}"}
    ingest_url = f"{services['ingest'].url}/v1/traces"
    runs_url = f"{services['aggregator'].url}/api/v1/runs"
    async with httpx.AsyncClient(timeout=10) as client:
        # both processes have looked the key up and cached it
        assert (await client.post(ingest_url, headers=leaked, json={})).status_code == 200
        assert (await client.get(runs_url, headers=leaked)).status_code == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{services['registry'].grpc_port}") as channel:
            key = KeyPair(made["public_key"], made["secret_key"])
            assert await _grpc_call(channel, "/vane.v1.PromptService/GetPrompt", key) == grpc.StatusCode.NOT_FOUND
            revoked = await registry_api.delete(f"/api/v1/keys/{made['public_key']}")
            assert revoked.status_code == 200, revoked.text
            assert await _grpc_call(channel, "/vane.v1.PromptService/GetPrompt", key) == grpc.StatusCode.UNAUTHENTICATED
        assert await _status_until(client, "POST", ingest_url, leaked, 401) == 401
        assert await _status_until(client, "GET", runs_url, leaked, 401) == 401
    listed = (await registry_api.get("/api/v1/keys")).json()["keys"]
    assert next(k for k in listed if k["public_key"] == made["public_key"])["revoked_at"] is not None


def test_vane_keys_create_list_revoke(services: dict[str, ServiceProcess], keys: Keys) -> None:
    env = {"VANE_REGISTRY_URL": services["registry"].url, "VANE_SECRET_KEY": keys.admin_all.secret_key}

    def vane(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "keys", *args],
            env={**services["registry"].env, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    created = vane("create", "--name", "ci-reader", "--scope", "read", "--scope", "ingest")
    public = next(line.split()[-1] for line in created.splitlines() if line.startswith("public key:"))
    assert "secret key: sk-vane-" in created and "scopes:     ingest read" in created
    listed = vane("list")
    line = next(line for line in listed.splitlines() if line.startswith(public))
    assert "ingest,read" in line and "active" in line and "ci-reader" in line
    assert vane("revoke", public).strip() == f"revoked {public}"
    assert "revoked" in next(line for line in vane("list").splitlines() if line.startswith(public))


async def test_keys_from_before_scopes_hold_all_four(infra: Infra) -> None:
    """Apply the migrations before 0011, make a key as the old code did, then 0011."""
    url = infra.database_url.rsplit("/", 1)[0] + f"/vane_scopes_{secrets.token_hex(4)}"
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        migrations = db.known_migrations()
        for migration in (m for m in migrations if m.version < 11):
            await conn.execute(migration.sql)
        project_id = uuid.uuid4()
        await conn.execute("INSERT INTO projects (id, name) VALUES ($1, 'old')", project_id)
        await conn.execute(
            "INSERT INTO api_keys (public_key, secret_hash, project_id, note) VALUES ('pk-vane-old', 'h', $1, 'ci')",
            project_id,
        )
        await conn.execute(next(m for m in migrations if m.version == 11).sql)
        row = await conn.fetchrow("SELECT scopes, name FROM api_keys WHERE public_key = 'pk-vane-old'")
        assert (list(row["scopes"]), row["name"]) == (["ingest", "read", "write", "admin"], "ci")
    finally:
        await conn.close()
        admin = await asyncpg.connect(infra.database_url.rsplit("/", 1)[0] + "/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()


async def test_the_init_key_holds_all_four(infra: Infra, start_service: Any, pool: asyncpg.Pool) -> None:
    public, secret = f"pk-vane-{secrets.token_hex(8)}", f"sk-vane-{secrets.token_hex(16)}"
    name = f"init-{secrets.token_hex(4)}"
    start_service("alert", VANE_INIT_PROJECT=name, VANE_INIT_PUBLIC_KEY=public, VANE_INIT_SECRET_KEY=secret)
    scopes = await pool.fetchval("SELECT scopes FROM api_keys WHERE public_key = $1", public)
    assert list(scopes) == ["ingest", "read", "write", "admin"]
