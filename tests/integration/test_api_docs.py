"""The project documents itself: docs/api/*.openapi.json are what the running services publish, docs/reference.md
is what docs/generate.py makes of them and of the code, the documented routes are the contract's, each on the
service that owns it, and the chart's Ingress sends every documented path to that service.

When a test here fails after a change to an API: .venv/bin/python docs/generate.py, and commit docs/."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import Infra
from tests.support.chart import one, rendered, route
from tests.support.processes import REPO, ServiceProcess


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load_generator()
SERVICES: tuple[str, ...] = generate.SERVICES

# The contract's routes, by the service that owns each (the datasets' owner is unnamed there: the aggregator,
# which answers every path no other service owns).
CONTRACT_ROUTES: dict[str, list[str]] = {
    "registry": [
        "POST /api/v1/prompts",
        "GET /api/v1/prompts",
        "GET /api/v1/prompts/{name}",
        "GET /api/v1/prompts/{name}/versions",
        "PATCH /api/v1/prompts/{name}/versions/{version}",
        "GET /api/v1/prompts/{name}/diff",
        "GET /api/v1/prompts/{name}/label-history",
        "POST /api/v1/prompts/{name}/rollouts",
        "GET /api/v1/prompts/{name}/rollouts",
        "GET /api/v1/prompts/{name}/rollouts/{id}",
        "POST /api/v1/prompts/{name}/rollouts/{id}/abort",
        "POST /api/v1/keys",
        "GET /api/v1/keys",
        "DELETE /api/v1/keys/{public_key}",
        "GET /api/public/v2/prompts/{name}",
        "POST /api/public/v2/prompts",
    ],
    "ingest": [
        "POST /v1/traces",
        "POST /api/public/otel/v1/traces",
        "POST /tracer/v1/traces",
        "POST /api/v1/scores",
        "POST /api/v1/score-configs",
        "POST /tracer/custom-eval-config/check_exists/",
        "POST /tracer/custom-eval-config/get_custom_eval_by_name/",
        "POST /api/public/scores",
    ],
    "aggregator": [
        "GET /api/v1/prompts/{name}/metrics",
        "GET /api/v1/versions/metrics",
        "GET /api/v1/prompts/{name}/timeseries",
        "GET /api/v1/versions/timeseries",
        "GET /api/v1/compare",
        "POST /api/v1/winner",
        "POST /api/v1/experiments",
        "GET /api/v1/experiments",
        "GET /api/v1/experiments/{id}",
        "POST /api/v1/experiments/{id}/stop",
        "GET /api/v1/regressions",
        "GET /api/v1/traces",
        "GET /api/v1/runs/{trace_id}",
        "POST /api/v1/datasets",
        "GET /api/v1/datasets",
        "POST /api/v1/datasets/{name}/items",
        "GET /api/v1/datasets/{name}/items",
        "GET /api/v1/datasets/{name}/runs",
    ],
    "alert": [
        "POST /api/v1/alerts/rules",
        "GET /api/v1/alerts/rules",
        "GET /api/v1/alerts/rules/{id}",
        "PATCH /api/v1/alerts/rules/{id}",
        "DELETE /api/v1/alerts/rules/{id}",
        "GET /api/v1/alerts/events",
        "POST /api/v1/alerts/silences",
    ],
}
# Contract routes this build does not serve yet. Checked both ways: a route that comes to be served must leave
# this list (and docs/ be regenerated), so the reference never claims less or more than the code does.
NOT_YET_SERVED: set[str] = set()  # every route CONTRACT names is served
# Every service answers these on its own port; through the one origin, the registry does.
SHARED = ("/api/v1/projects/",)
_PARAMETER = re.compile(r"\{[^}]+\}")


def _key(route: str) -> str:
    """METHOD /path with every path parameter as {} and no trailing slash."""
    method, path = route.split(" ", 1)
    path = _PARAMETER.sub("{}", path).rstrip("/") or "/"
    return f"{method} {path}"


def _documented(document: dict[str, Any]) -> set[str]:
    return {_key(f"{method} {path}") for method, path, _ in generate._operations(document)}


@pytest.fixture(scope="module")
def documents(infra: Infra) -> Iterator[dict[str, dict[str, Any]]]:
    """Each running service's OpenAPI document, as it serves it."""
    processes = [ServiceProcess(service, infra.env(), infra.log_dir) for service in SERVICES]
    try:
        for process in processes:
            process.start(wait=False)
        for process in processes:
            process.wait_ready(timeout=60)
        yield {p.service: httpx.get(f"{p.url}/schema/openapi.json", timeout=10).json() for p in processes}
    finally:
        for process in processes:
            process.kill()


def test_the_committed_openapi_documents_are_what_the_services_publish(documents: dict[str, dict[str, Any]]) -> None:
    for service, document in documents.items():
        committed = json.loads(generate.openapi_path(service).read_text())
        assert committed == document, f"docs/api/{service}.openapi.json is stale: run docs/generate.py"
        assert generate.openapi_path(service).read_text() == generate.openapi_text(document)


def test_the_reference_is_what_the_generator_makes_of_the_code(documents: dict[str, dict[str, Any]]) -> None:
    assert generate.REFERENCE.read_text() == generate.reference(documents), "run docs/generate.py"


def test_every_contract_route_is_documented_on_its_own_service_alone(documents: dict[str, dict[str, Any]]) -> None:
    by_service = {service: _documented(document) for service, document in documents.items()}
    wrong: dict[str, str] = {}
    for owner, routes in CONTRACT_ROUTES.items():
        for contract_route in routes:
            on = {service for service, keys in by_service.items() if _key(contract_route) in keys}
            expected = set() if contract_route in NOT_YET_SERVED else {owner}
            if on != expected:
                wrong[contract_route] = f"served by {sorted(on) or 'none'}, expected {sorted(expected) or 'none'}"
    assert not wrong, wrong


def test_no_path_is_documented_by_two_services(documents: dict[str, dict[str, Any]]) -> None:
    owners: dict[str, list[str]] = {}
    for service, document in documents.items():
        for key in _documented(document):
            if not key.split(" ", 1)[1].startswith(SHARED):
                owners.setdefault(key, []).append(service)
    assert {key: services for key, services in owners.items() if len(services) > 1} == {}


def test_the_ingress_sends_every_documented_path_to_the_service_that_documents_it(
    documents: dict[str, dict[str, Any]],
) -> None:
    ingress = one(rendered({"ingress": {"enabled": True, "className": "nginx"}}), "Ingress", "vane")
    misrouted = {}
    for service, document in documents.items():
        for _, path, _ in generate._operations(document):
            if path.startswith(SHARED):
                continue
            concrete = _PARAMETER.sub("x1", path)
            if (reached := route(ingress, concrete)) != f"vane-{service}":
                misrouted[path] = f"{reached}, not vane-{service}"
    assert not misrouted, misrouted
