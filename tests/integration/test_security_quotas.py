"""Quotas against two real ingest replicas sharing Redis: a project over its bytes a day or spans a
second gets 429 with Retry-After (gRPC RESOURCE_EXHAUSTED) on any replica while another project's
traffic goes on; the shared counters behind judge calls, across two replicas' counters."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from services.common.quotas import Counters
from tests.conftest import Infra, Project
from tests.integration.test_ingest_otlp import finished_spans
from tests.support.processes import REPO, ServiceProcess

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def replicas(infra: Infra) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    procs = [ServiceProcess("ingest", infra.env(), infra.log_dir) for _ in range(2)]
    try:
        for proc in procs:
            proc.start(wait=False)
        for proc in procs:
            proc.wait_ready()
        yield procs[0], procs[1]
    finally:
        for proc in procs:
            proc.kill()


def vane_quotas(infra: Infra, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "quotas", *args],
        env={**infra.env(), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def body(spans: int) -> bytes:
    return encode_spans(finished_spans(spans)).SerializeToString()


async def post(client: httpx.AsyncClient, replica: ServiceProcess, project: Project, data: bytes) -> httpx.Response:
    return await client.post(f"{replica.url}/v1/traces", content=data, headers={**project.bearer, **PROTOBUF})


async def test_a_project_over_its_bytes_a_day_is_refused_on_every_replica_and_another_is_not(
    replicas: tuple[ServiceProcess, ServiceProcess], infra: Infra, make_project: Callable[..., Any]
) -> None:
    a, b = replicas
    capped, other = await make_project(), await make_project()
    data = body(2)
    shown = vane_quotas(infra, "set", capped.name, "--bytes-per-day", str(int(len(data) * 1.5)))
    assert f"bytes_per_day: {int(len(data) * 1.5)} (set)" in shown
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await post(client, a, capped, data)).status_code == 200
        refused = await post(client, b, capped, data)  # the other replica knows what the first counted
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
        for replica in (a, b):
            assert (await post(client, replica, other, data)).status_code == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{b.grpc_port}") as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await export(data, metadata=(("authorization", f"Bearer {capped.keys.secret_key}"),))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await export(data, metadata=(("authorization", f"Bearer {other.keys.secret_key}"),))
    assert "bytes_per_day: unlimited (default)" in vane_quotas(infra, "show", other.name)


async def test_a_request_over_the_spans_a_second_is_refused_with_retry_after(
    replicas: tuple[ServiceProcess, ServiceProcess], infra: Infra, make_project: Callable[..., Any]
) -> None:
    capped, other = await make_project(), await make_project()
    vane_quotas(infra, "set", capped.name, "--spans-per-second", "3")
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await post(client, replicas[0], capped, body(5))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert "3 spans a second" in refused.json()["error"]["message"]
        assert (await post(client, replicas[0], other, body(5))).status_code == 200
    vane_quotas(infra, "set", capped.name, "--spans-per-second", "default")


async def test_two_replicas_share_one_count_per_project_and_window(infra: Infra) -> None:
    namespace = f"{infra.namespace}q{secrets.token_hex(3)}"
    clients = [aioredis.Redis.from_url(infra.redis_url) for _ in range(2)]
    first, second = (Counters(c, namespace) for c in clients)
    busy, quiet = uuid.uuid4(), uuid.uuid4()
    now = 1_800_000_000.25  # one instant, so the test never straddles a window
    try:
        for counters in (first, second, first, second, first):
            assert await counters.take(busy, "judge", 1, 5, 1, now=now) is None
        wait = await second.take(busy, "judge", 1, 5, 1, now=now)
        assert wait == pytest.approx(0.75)
        assert await first.take(quiet, "judge", 1, 5, 1, now=now) is None  # another project: its own count
        assert await first.take(busy, "judge", 1, 5, 1, now=now + 1) is None  # the next second starts afresh
    finally:
        for c in clients:
            await c.aclose()


async def test_with_redis_unreachable_the_quota_is_not_enforced() -> None:
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        assert await Counters(unreachable, "t").take(uuid.uuid4(), "spans", 10, 1, 1) is None
    finally:
        await unreachable.aclose()
