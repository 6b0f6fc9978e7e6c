"""The gateway's route table: which service answers each public path. One table, read by the Caddy
config (caddy.py) and checked against every service's own route table (tests/integration/test_gateway_routes.py).

Patterns are Caddy path matchers: `/a` exactly, `/a/*` any path under `/a/`, `/a/*/b` one segment
in the middle. Routes are tried in order; the first that matches wins, and a path no route names
goes to DEFAULT_SERVICE.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    service: str
    paths: tuple[str, ...]


# The registry serves /api/v1/prompts/{name}… and the aggregator that prompt's metrics and time
# series under the same prefix: their two paths come first, so that each path has one owner.
ROUTES: tuple[Route, ...] = (
    Route("aggregator", ("/api/v1/prompts/*/metrics", "/api/v1/prompts/*/timeseries")),
    Route(
        "registry",
        (
            "/api/v1/prompts",
            "/api/v1/prompts/*",
            "/api/v1/keys",
            "/api/v1/keys/*",
            # every service answers "who am I"; through the gateway the registry does (it owns keys)
            "/api/v1/projects/*",
            "/api/public/v2/prompts",
            "/api/public/v2/prompts/*",
            "/api/v1/audit",
        ),
    ),
    Route(
        "ingest",
        (
            "/v1/traces",
            "/api/public/otel/*",
            "/tracer/*",
            "/api/v1/scores",  # posting scores; /api/v1/scores/pending is the aggregator's
            "/api/v1/score-configs",
            "/api/v1/score-configs/*",
            "/api/v1/models",
            "/api/v1/models/*",
            "/api/public/scores",
            "/api/public/scores/*",
            "/api/public/ingestion",
            "/api/public/projects",
            "/v1/logs",
            "/api/v1/redaction",
        ),
    ),
    Route("evaluator", ("/api/v1/evaluators", "/api/v1/evaluators/*", "/api/v1/evaluations", "/api/v1/evaluations/*")),
    Route("alert", ("/api/v1/alerts", "/api/v1/alerts/*")),
)

# The dashboard (`/`, `/ui/…`), the query API, deciding, experiments and regressions; and, for the
# gateway itself, /healthz, /readyz, /metrics and /schema.
DEFAULT_SERVICE = "aggregator"

# Paths every service answers on its own port (health, metrics, OpenAPI, who am I): through the
# gateway one of them answers, so they are not "served by two services".
SHARED_PATHS: tuple[str, ...] = ("/healthz", "/readyz", "/metrics", "/schema", "/api/v1/projects")
