"""Wires the registry service: its listeners and workers, in the order they start and stop."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.http import build_http_app, project_routes
from services.common.runtime import Component, HttpServer, Needs, Resources, run_service

NAME = "registry"
NEEDS = Needs(postgres=True, nats=True, redis=True, redis_required=False)


async def build(resources: Resources) -> Sequence[Component]:
    settings = resources.settings
    app = build_http_app(resources, project_routes(), title="Vane prompt registry")
    return [HttpServer(f"{NAME}-http", app, settings.bind_host, settings.registry_http_port)]


def main() -> None:
    run_service(NAME, NEEDS, build)
