"""The registry under faults: its own Redis killed, and its Postgres cut off (through a proxy of
this test's own, so the machine's shared servers are never touched)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import grpc
import httpx
import pytest
from vane.v1 import prompts_pb2 as pb
from vane.v1 import prompts_pb2_grpc

from services.common.auth import create_project
from tests.conftest import Infra, Project
from tests.support.processes import ServiceProcess, free_port, port_open

pytestmark = pytest.mark.slow
DEADLINE_SECONDS = 10.0


@pytest.fixture
def own_redis(tmp_path: object) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + DEADLINE_SECONDS
    while not port_open("127.0.0.1", port) and time.monotonic() < end:
        time.sleep(0.05)
    yield port, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class CuttableProxy:
    """A TCP proxy to Postgres in a thread of its own; `cut()` drops every connection and the listener."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.port = free_port()
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(5)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        started.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def close_all() -> None:
            assert self._server is not None
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()

        self._loop.call_soon_threadsafe(close_all)

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _project(pool: object) -> Project:
    async with pool.acquire() as conn:  # type: ignore[attr-defined]
        project_id, keys = await create_project(conn, f"faults-{secrets.token_hex(4)}")
    return Project(project_id, "faults", keys)


async def test_registry_keeps_answering_with_its_redis_stopped(
    start_service: Callable[..., ServiceProcess], own_redis: tuple[int, subprocess.Popen[bytes]], pool: object
) -> None:
    port, redis_proc = own_redis
    project = await _project(pool)
    registry = start_service("registry", VANE_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    async with httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as http:
        r = await http.post("/api/v1/prompts", json={"name": "p", "prompt": "one", "labels": ["production"]})
        assert r.status_code == 201
        assert (await http.get("/api/v1/prompts/p")).json()["version"] == 1
        assert (await http.get("/readyz")).json()["status"] == "ready"
        redis_proc.kill()
        redis_proc.wait()
        r = await http.post("/api/v1/prompts", json={"name": "p", "prompt": "two", "labels": ["production"]})
        assert r.status_code == 201, r.text
        assert (await http.get("/api/v1/prompts/p")).json()["version"] == 2
        assert (await http.get("/api/v1/prompts/p", params={"version": 1})).json()["prompt"] == "one"
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"].startswith("down")


async def test_registry_answers_reads_that_redis_holds_while_postgres_is_cut_off(
    infra: Infra, pool: object, own_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    redis_port, _ = own_redis
    target = urlsplit(infra.database_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    env = infra.env(
        VANE_DATABASE_URL=_via(infra.database_url, proxy.port), VANE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"
    )
    filler, reader = (ServiceProcess("registry", env, infra.log_dir) for _ in range(2))
    project = await _project(pool)
    md = (("authorization", f"Bearer {project.keys.secret_key}"),)
    try:
        for proc in (filler.start(wait=False), reader.start(wait=False)):
            await asyncio.to_thread(proc.wait_ready)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{filler.grpc_port}") as ch:
            stub = prompts_pb2_grpc.PromptServiceStub(ch)
            await stub.CreatePrompt(pb.CreatePromptRequest(name="p", text="kept", labels=["production"]), metadata=md)
            assert (await stub.GetPrompt(pb.GetPromptRequest(name="p"), metadata=md)).prompt.text == "kept"
        proxy.cut()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{reader.grpc_port}") as ch:
            stub = prompts_pb2_grpc.PromptServiceStub(ch)
            got = await stub.GetPrompt(pb.GetPromptRequest(name="p"), metadata=md)
            assert (got.prompt.version, got.prompt.text) == (1, "kept")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreatePrompt(pb.CreatePromptRequest(name="p", text="new"), metadata=md)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        filler.kill()
        reader.kill()
        proxy.stop()
