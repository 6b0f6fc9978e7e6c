"""Several processes of one service on the same ports (VANE_<SERVICE>_WORKERS): the kernel spreads
connections over them with SO_REUSEPORT, so a CPU-bound service uses every core.

The first process starts the others as children and stops them with itself; a child that dies
stops the service, and a child whose parent is killed is sent SIGTERM by the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

from litestar import Litestar

from services.common.logs import get_logger
from services.common.runtime import HttpServer

_PR_SET_PDEATHSIG = 1

log = get_logger(component="workers")


def index_variable(service: str) -> str:
    """The variable a service's parent sets on its children: their index, 1…workers-1."""
    return f"VANE_{service.upper()}_WORKER_INDEX"


def worker_index(service: str) -> int:
    """0 in the first (parent) process, else this child's index."""
    return int(os.environ.get(index_variable(service), "0"))


def shared_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class SharedPortHttpServer(HttpServer):
    """The runtime's HTTP server, on a socket that the service's other processes share."""

    def __init__(self, name: str, app: Litestar, host: str, port: int) -> None:
        super().__init__(name, app, host, port)
        self._socket = shared_socket(host, port)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name=self.name)
        while not self._server.started:
            if self._task.done():
                raise RuntimeError(f"{self.name} could not start")
            await asyncio.sleep(0.02)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerProcesses:
    """The other `workers - 1` processes of `vane serve <service>`, as a component of the first."""

    def __init__(self, workers: int, service: str = "ingest") -> None:
        self.name = f"{service}-workers"
        self._service = service
        self._count = workers - 1
        self._children: list[asyncio.subprocess.Process] = []
        self._stopping = False

    async def start(self) -> None:
        for index in range(1, self._count + 1):
            env = {**os.environ, index_variable(self._service): str(index)}
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.cli.main",
                "serve",
                self._service,
                env=env,
                preexec_fn=_die_with_parent,
            )
            self._children.append(child)
        log.info("workers_started", service=self._service, pids=[c.pid for c in self._children])

    def pids(self) -> list[int]:
        return [child.pid for child in self._children]

    async def stop(self, grace_seconds: float) -> None:
        self._stopping = True
        for child in self._children:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
        for child in self._children:
            try:
                await asyncio.wait_for(child.wait(), max(0.1, grace_seconds))
            except TimeoutError:
                child.kill()
                await child.wait()

    def failed(self) -> BaseException | None:
        if self._stopping:
            return None
        for child in self._children:
            if child.returncode is not None:
                return RuntimeError(f"{self._service} worker {child.pid} exited with {child.returncode}")
        return None
