"""VANE_REGISTRY_WORKERS: several registry processes on the same two ports, each one coherent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import httpx
import psutil
from vane.v1 import prompts_pb2 as pb
from vane.v1 import prompts_pb2_grpc

from tests.conftest import Project
from tests.support.processes import ServiceProcess

DEADLINE_SECONDS = 15.0


def _listening_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def _workers(registry: ServiceProcess) -> list[psutil.Process]:
    assert registry.proc is not None
    return [p for p in psutil.Process(registry.proc.pid).children() if "serve" in " ".join(p.cmdline())]


def _versions_served(registry: ServiceProcess, project: Project, calls: int) -> set[int]:
    """GetPrompt on fresh connections, which the kernel spreads over the processes sharing the port."""
    served = set()
    for _ in range(calls):
        with grpc.insecure_channel(f"127.0.0.1:{registry.grpc_port}") as channel:
            answer = prompts_pb2_grpc.PromptServiceStub(channel).GetPrompt(
                pb.GetPromptRequest(name="w"), metadata=(("authorization", f"Bearer {project.keys.secret_key}"),)
            )
        served.add(answer.prompt.version)
    return served


def _wait_for_worker(registry: ServiceProcess, deadline: float) -> psutil.Process:
    """The child process, once it listens on both of the registry's ports."""
    ports = {registry.grpc_port, registry.http_port}
    while not ((workers := _workers(registry)) and ports <= _listening_ports(workers[0].pid)):
        assert time.monotonic() < deadline, registry.tail()
        time.sleep(0.1)
    return workers[0]


def _label_move_reaches_every_worker(registry: ServiceProcess, project: Project, deadline: float) -> None:
    with httpx.Client(base_url=registry.url, headers=project.bearer, timeout=10) as http:
        http.post("/api/v1/prompts", json={"name": "w", "prompt": "one", "labels": ["production"]}).raise_for_status()
        http.post("/api/v1/prompts", json={"name": "w", "prompt": "two"}).raise_for_status()
        assert _versions_served(registry, project, 20) == {1}  # every process now holds version 1 in its cache
        http.patch("/api/v1/prompts/w/versions/2", json={"labels": ["production"]}).raise_for_status()
    while (served := _versions_served(registry, project, 20)) != {2}:
        assert time.monotonic() < deadline, f"still served {served}"


async def test_workers_share_both_ports_and_all_follow_a_label_move(
    start_service: Callable[..., ServiceProcess], make_project: Callable[..., object]
) -> None:
    project: Project = await make_project()  # type: ignore[misc]
    registry = start_service("registry", VANE_REGISTRY_WORKERS="2")
    deadline = time.monotonic() + DEADLINE_SECONDS
    await asyncio.to_thread(_wait_for_worker, registry, deadline)
    assert registry.proc is not None
    assert {registry.grpc_port, registry.http_port} <= _listening_ports(registry.proc.pid)
    await asyncio.to_thread(_label_move_reaches_every_worker, registry, project, deadline)


def test_stopping_the_registry_stops_its_workers(start_service: Callable[..., ServiceProcess]) -> None:
    registry = start_service("registry", VANE_REGISTRY_WORKERS="2")
    worker = _wait_for_worker(registry, time.monotonic() + DEADLINE_SECONDS)
    assert registry.terminate() == 0
    gone, alive = psutil.wait_procs([worker], timeout=DEADLINE_SECONDS)
    assert not alive and gone
