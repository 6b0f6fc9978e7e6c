"""For the alert service's tests and benchmark: rollups written with the aggregator's own writer,
a local HTTP receiver that verifies Standard Webhooks signatures, and a real Alertmanager."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.aggregator import rollup, rollup_store
from services.aggregator.rollup import Generation, RollupKey
from tests.support.aggregator_load import STREAM_MAX_BYTES

NS_PER_MINUTE = 60_000_000_000
# Rounds every half second, retries at most a second apart, a sender's lease (3x the send timeout)
# running out 3 s after it was killed: the tests wait seconds, not minutes.
FAST = {
    "VANE_ALERT_EVALUATE_SECONDS": "0.5",
    "VANE_ALERT_RETRY_MAX_SECONDS": "1",
    "VANE_ALERT_SEND_TIMEOUT_SECONDS": "1",  # a sender's lease (3x this) runs out 3 s after it was killed
    "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES),
}
# A rule that fires when a tenth of the last ten minutes' generations failed.
ERRORS_RULE = {
    "name": "errors",
    "metric": "error_rate",
    "condition": {"op": "above", "threshold": 0.1},
    "window": "10m",
}
KEY = RollupKey("support-bot", "v1", "support-reply", 1, "gpt-4o")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example secret


def generations(
    project: uuid.UUID, at_ns: Sequence[int], latency_ms: Sequence[float], key: RollupKey = KEY, errors: int = 0
) -> list[Generation]:
    """Generations starting at `at_ns` with these latencies; the first `errors` of them failed."""
    return [
        Generation(project, int(t), key, float(ms), None, 100, 20, 0.001, i < errors)
        for i, (t, ms) in enumerate(zip(at_ns, latency_ms, strict=True))
    ]


async def roll_up(pool: asyncpg.Pool, gens: Sequence[Generation]) -> None:
    """Add the generations to the rollups at every level, as an aggregator batch commits them."""
    cells = rollup.at_levels(rollup.minute_cells(gens))
    async with pool.acquire() as conn, conn.transaction():
        await rollup_store.add_to_rollups(conn, cells)


async def failing_traffic(pool: Any, project_id: Any, errors: int, n: int = 100) -> None:
    """n generations over the last minutes of which `errors` failed, rolled up."""
    rng = np.random.default_rng(errors)
    now = time.time_ns()
    at = [int(now - m * NS_PER_MINUTE) for m in rng.uniform(1, 4, n)]
    await roll_up(pool, generations(project_id, at, rng.uniform(100, 200, n), errors=errors))


async def holds(value: bool) -> bool:
    """`value` as a check for `eventually`."""
    return value


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    arrived: float = field(default_factory=time.time)  # epoch seconds

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server taking notifications: webhooks are checked with the standardwebhooks
    package. `status` is what it answers; while `holding`, it answers nothing until `release()`."""

    secret: str = SECRET
    status: int = 200
    fail_first: int = 0  # answer 503 to this many requests first
    holding: bool = False
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.holding = False
        self._released.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = False
        if "webhook-id" in request.headers:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        self.received.append(Received(request.path, headers, body, verified))
        if self.holding:
            await self._released.wait()
        if len(self.received) <= self.fail_first:
            return web.Response(status=503, text="try later")
        return web.Response(status=self.status, text="ok")

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = port or site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def webhook_ids(self, path: str = "/hook") -> list[str]:
        return [r.headers["webhook-id"] for r in self.at(path)]


def alertmanager_binary() -> str | None:
    """Debian's prometheus-alertmanager, installed with apt when missing and the test runs as root."""
    found = shutil.which("prometheus-alertmanager")
    if found or shutil.which("apt-get") is None:
        return found
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "prometheus-alertmanager"]):
        try:
            if subprocess.run(command, env=env, capture_output=True, timeout=600).returncode != 0:
                return None
        except (OSError, subprocess.TimeoutExpired):
            return None
    return shutil.which("prometheus-alertmanager")


class Alertmanager:
    """A real Alertmanager on a free port, with its own storage."""

    def __init__(self, binary: str, workdir: Path, port: int) -> None:
        self.port = port
        config = workdir / "alertmanager.yml"
        config.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=(workdir / "alertmanager.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError("alertmanager did not become ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"{self.url}/api/v2/alerts", timeout=5).json()
        return found

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
