"""`vane up` as a user runs it: in a directory of its own, every port its own, Ctrl-C at the end."""

from __future__ import annotations

import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from services.cli.embedded import free_port
from tests.conftest import Infra
from tests.support.processes import REPO, port_open

PORT_VARIABLES = (
    "VANE_REGISTRY_GRPC_PORT",
    "VANE_REGISTRY_HTTP_PORT",
    "VANE_INGEST_HTTP_PORT",
    "VANE_INGEST_GRPC_PORT",
    "VANE_EVALUATOR_PORT",
    "VANE_AGGREGATOR_PORT",
    "VANE_ALERT_PORT",
    "VANE_GATEWAY_PORT",
)
HTTP_PORTS = {
    "registry": "VANE_REGISTRY_HTTP_PORT",
    "ingest": "VANE_INGEST_HTTP_PORT",
    "evaluator": "VANE_EVALUATOR_PORT",
    "aggregator": "VANE_AGGREGATOR_PORT",
    "alert": "VANE_ALERT_PORT",
}


class VaneUp:
    """A `vane up` process whose output is read line by line as it comes."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        vane = Path(sys.executable).parent / "vane"
        command = [str(vane), "up"] if vane.exists() else [sys.executable, "-m", "services.cli.main", "up"]
        command += args
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        """Return the whole output once a line contains text; fail with the output if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return "\n".join(self.lines)
        raise AssertionError(f"vane up never printed {text!r}:\n" + "\n".join(self.lines))


def _ports() -> dict[str, str]:
    return {name: str(free_port()) for name in PORT_VARIABLES}


def _bring_up_use_and_interrupt(tmp_path: Path, env: dict[str, str]) -> str:
    """Run `vane up` to ready, check what it printed, Ctrl-C it, and check it left nothing behind."""
    up = VaneUp(tmp_path, env)
    try:
        output = up.wait_for("Press Ctrl-C to stop.")
        for service, variable in HTTP_PORTS.items():
            url = f"http://127.0.0.1:{env[variable]}"
            assert url in output, f"{service} endpoint not printed"
            assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200, service
        assert f"gRPC 127.0.0.1:{env['VANE_REGISTRY_GRPC_PORT']}" in output
        assert f"OTLP/gRPC 127.0.0.1:{env['VANE_INGEST_GRPC_PORT']}" in output
        secret = re.search(r"export VANE_SECRET_KEY=(sk-vane-\S+)", output)
        assert secret is not None, output
        me = httpx.get(
            f"http://127.0.0.1:{env['VANE_AGGREGATOR_PORT']}/api/v1/projects/current",
            headers={"Authorization": f"Bearer {secret.group(1)}"},
            timeout=5,
        )
        assert me.status_code == 200 and me.json()["name"] == "local"
        gateway = f"http://127.0.0.1:{env['VANE_GATEWAY_PORT']}"
        assert f"Vane is up at {gateway}" in output
        through = httpx.get(f"{gateway}/api/v1/projects/current", headers=me.request.headers, timeout=5)
        assert through.status_code == 200 and through.json()["name"] == "local"
        credentials = tmp_path / ".vane" / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert secret.group(1) in credentials.read_text()

        children = psutil.Process(up.proc.pid).children(recursive=True)
        embedded = re.findall(r"127\.0\.0\.1:(\d+)\S*\s+\(embedded", output)
        ports = [int(env[v]) for v in PORT_VARIABLES] + [int(p) for p in embedded]
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(timeout=60) == 0, "\n".join(up.lines)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running: {[(c.pid, c.name()) for c in alive]}"
    still_open = [port for port in ports if port_open("127.0.0.1", port)]
    assert not still_open, f"ports still open: {still_open}"
    return output


def test_vane_up_with_the_machines_services_serves_all_five_and_ctrl_c_leaves_nothing(
    tmp_path: Path, infra: Infra
) -> None:
    output = _bring_up_use_and_interrupt(tmp_path, {**infra.env(), **_ports()})
    assert "(external)" in output and "embedded" not in output


def test_vane_up_starts_embedded_nats_postgres_and_redis_where_none_answer(tmp_path: Path, infra: Infra) -> None:
    missing = {
        "VANE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/vane",
        "VANE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "VANE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    env = {**infra.env(), **_ports(), **missing}
    output = _bring_up_use_and_interrupt(tmp_path, env)
    for name, variable in (("postgres", "VANE_DATABASE_URL"), ("nats", "VANE_NATS_URL"), ("redis", "VANE_REDIS_URL")):
        assert f"{env[variable]}   (embedded, under ./.vane/{name})" in output, "not on its configured port"
        assert (tmp_path / ".vane" / name).is_dir()
