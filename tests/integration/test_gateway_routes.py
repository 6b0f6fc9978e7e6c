"""The gateway's route table against every service's own: each public path goes to the one service
that serves it, through the real Caddy."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.routes import HTTPRoute

from services.cli.embedded import free_port
from services.common import runtime
from services.common.settings import Settings
from services.gateway.caddy import Gateway
from services.gateway.routes import SHARED_PATHS
from tests.conftest import Infra

SERVICES = ("registry", "ingest", "evaluator", "aggregator", "alert")
_SAMPLES = {"str": "sample-name", "int": "2", "uuid": str(uuid.uuid4()), "path": "a/b.js"}
_PARAM = re.compile(r"\{(\w+):(\w+)\}")


async def _route_table(service: str, settings: Settings) -> Litestar:
    """The Litestar app the service builds at start-up, with the same wiring as `vane serve`."""
    module = importlib.import_module(f"services.{service}.app")
    resources = await runtime._connect(service, settings, module.NEEDS, asyncio.Event())
    try:
        components = await module.build(resources)
        return next(c.app for c in components if isinstance(c, runtime.HttpServer))
    finally:
        await runtime._close(resources)


@pytest.fixture(scope="module")
def route_tables(infra: Infra) -> dict[str, Litestar]:
    saved = dict(os.environ)
    os.environ.update(infra.env())
    try:
        settings = Settings.from_env()
        return {service: asyncio.run(_route_table(service, settings)) for service in SERVICES}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _requests(app: Litestar) -> Iterator[tuple[str, str]]:
    """(method, a concrete path) for every route and method the app answers."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = _PARAM.sub(lambda m: _SAMPLES[m.group(2)], route.path)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            yield method, path


def _serves(app: Litestar, method: str, path: str) -> bool:
    try:
        app.asgi_router.handle_routing(path=path, method=method)  # type: ignore[arg-type]
    except (NotFoundException, MethodNotAllowedException):
        return False
    return True


def _shared(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in SHARED_PATHS)


class _Echo(BaseHTTPRequestHandler):
    """Stands for a service: answers every request with the service's name."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = self.server.service.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    servers = {}
    for service in SERVICES:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        server.service = service  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[service] = server
    upstreams = {name: f"127.0.0.1:{s.server_address[1]}" for name, s in servers.items()}
    home: Path = tmp_path_factory.mktemp("gateway")
    gw = Gateway(home, f"127.0.0.1:{free_port()}", upstreams).start()
    try:
        gw.wait_ready()
        yield gw.url
    finally:
        gw.stop()
        for server in servers.values():
            with contextlib.suppress(Exception):
                server.shutdown()


def test_no_public_path_is_served_by_two_services(route_tables: dict[str, Litestar]) -> None:
    doubled = []
    for service, app in route_tables.items():
        for method, path in _requests(app):
            owners = [name for name, other in route_tables.items() if _serves(other, method, path)]
            if not _shared(path) and owners != [service]:
                doubled.append((method, path, owners))
    assert not doubled


def test_the_gateway_sends_every_public_path_to_the_service_that_serves_it(
    route_tables: dict[str, Litestar], gateway: str
) -> None:
    wrong = []
    checked = 0
    with httpx.Client(base_url=gateway, timeout=5) as http:
        for service, app in route_tables.items():
            for method, path in _requests(app):
                answered_by = http.request(method, path, content=b"{}").text
                # a shared path (health, OpenAPI, who am I) may go to any service that serves it
                if not _serves(route_tables[answered_by], method, path):
                    wrong.append((method, path, service, answered_by))
                checked += 1
    assert not wrong
    assert checked > 40  # every service's routes were read


def test_the_gateway_routes_the_contracts_paths_that_other_services_are_adding(gateway: str) -> None:
    """Paths of the contract whose handlers land with other issues go where the contract says."""
    expected = {
        "/api/v1/alerts/rules": "alert",
        "/api/v1/alerts/events": "alert",
        "/api/v1/experiments": "aggregator",
        "/api/v1/regressions": "aggregator",
        "/api/v1/traces": "aggregator",
        "/api/v1/keys": "registry",
        "/api/v1/prompts/support-reply/rollouts": "registry",
        "/api/public/v2/prompts/support-reply": "registry",
        "/api/public/scores": "ingest",
        "/api/public/otel/v1/traces": "ingest",
        "/": "aggregator",
        "/ui/app.js": "aggregator",
    }
    with httpx.Client(base_url=gateway, timeout=5) as http:
        answered = {path: http.get(path).text for path in expected}
    assert answered == expected
