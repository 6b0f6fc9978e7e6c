"""Real `vane serve` processes for tests: started on free ports, waited on until ready, killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]

# The environment variable of each service's ports, and which of them answers /readyz.
SERVICE_PORTS: dict[str, tuple[str, ...]] = {
    "registry": ("VANE_REGISTRY_HTTP_PORT", "VANE_REGISTRY_GRPC_PORT"),
    "ingest": ("VANE_INGEST_HTTP_PORT", "VANE_INGEST_GRPC_PORT"),
    "evaluator": ("VANE_EVALUATOR_PORT",),
    "aggregator": ("VANE_AGGREGATOR_PORT",),
    "alert": ("VANE_ALERT_PORT",),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ServiceProcess:
    """One `vane serve <service>` child process with its own ports."""

    def __init__(self, service: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.service = service
        self.ports = {var: free_port() for var in SERVICE_PORTS[service]}
        self.env = {**os.environ, **env, **{k: str(v) for k, v in self.ports.items()}}
        self.log_path = log_dir / f"{service}-{self.ports[SERVICE_PORTS[service][0]]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_port(self) -> int:
        return self.ports[SERVICE_PORTS[self.service][0]]

    @property
    def grpc_port(self) -> int:
        return self.ports[SERVICE_PORTS[self.service][1]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True, timeout: float = 30.0) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "serve", self.service],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.service} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=1.0)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{self.service} not ready after {timeout}s ({last}):\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, wait: bool = True) -> ServiceProcess:
        self.kill()
        return self.start(wait=wait)
