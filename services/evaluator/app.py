"""Wires the evaluator service: its listeners and workers, in the order they start and stop."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.http import build_http_app, project_routes
from services.common.runtime import Component, HttpServer, Needs, Resources, run_service

NAME = "evaluator"
NEEDS = Needs(postgres=True, nats=True)


async def build(resources: Resources) -> Sequence[Component]:
    settings = resources.settings
    app = build_http_app(resources, project_routes(), title="Vane evaluator")
    return [HttpServer(f"{NAME}-http", app, settings.bind_host, settings.evaluator_port)]


def main() -> None:
    run_service(NAME, NEEDS, build)
