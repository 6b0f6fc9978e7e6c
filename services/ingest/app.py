"""Wires the ingest service. A span goes: receive (decode.py, authenticate) → normalise
(normalise.py over conventions/) → price (pricing.py) → publish (publish.py), in intake.py,
behind OTLP/HTTP (otlp_http.py) and OTLP/gRPC (otlp_grpc.py). Scores (scores.py), model prices
(models.py) and Future AGI's eval-config questions (evalconfig.py) sit beside it on HTTP, with
Langfuse's score and project routes (langfuse_api.py) and OTLP logs, whose GenAI events give
their spans the content they lack (otlp_logs.py → content_join.py, through Redis)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from services.common.http import build_http_app, project_routes
from services.common.quotas import Counters, Quotas
from services.common.runtime import Component, GrpcServer, HttpServer, Needs, Resources, run_service
from services.ingest.content_join import ContentJoin
from services.ingest.evalconfig import eval_config_routes
from services.ingest.intake import SpanIntake
from services.ingest.langfuse_api import langfuse_routes
from services.ingest.models import PriceStore, model_routes
from services.ingest.otlp_grpc import trace_service
from services.ingest.otlp_http import otlp_routes
from services.ingest.otlp_logs import otlp_log_routes
from services.ingest.redact import RedactionStore, redaction_routes
from services.ingest.scores import ScoreConfigStore, score_routes
from services.ingest.workers import SharedPortHttpServer, WorkerProcesses, worker_index

NAME = "ingest"
# Redis holds GenAI log events until their spans come, and quotas shared by replicas: spans flow without it.
NEEDS = Needs(postgres=True, nats=True, redis=True, redis_required=False)


async def build(resources: Resources) -> Sequence[Component]:
    settings = resources.settings
    assert resources.pool is not None and resources.bus is not None and resources.auth is not None
    timeout = settings.ingest_publish_timeout_seconds
    prices = PriceStore(resources.pool)
    join = ContentJoin(resources.redis, settings.namespace)
    redaction = RedactionStore(resources.pool)
    quotas = Quotas(resources.pool, Counters(resources.redis, settings.namespace))
    intake = SpanIntake(resources.bus, prices, timeout, join, redaction, quotas)
    score_configs = ScoreConfigStore(resources.pool)
    routes = [
        *otlp_routes(intake, settings.max_body_bytes),
        *otlp_log_routes(join, settings.max_body_bytes),
        *score_routes(resources.bus, score_configs, timeout),
        *langfuse_routes(resources.bus, score_configs, timeout),
        *model_routes(prices),
        *eval_config_routes(),
        *redaction_routes(redaction),
        *project_routes(),
    ]
    app = build_http_app(resources, routes, title="Vane ingest", max_body_bytes=settings.max_body_bytes)
    grpc_server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.so_reuseport", 1 if settings.ingest_workers > 1 else 0),
        ]
    )
    grpc_server.add_generic_rpc_handlers((trace_service(intake, resources.auth),))
    shared = settings.ingest_workers > 1
    http_class = SharedPortHttpServer if shared else HttpServer
    components: list[Component] = [
        http_class(f"{NAME}-http", app, settings.bind_host, settings.ingest_http_port),
        GrpcServer(f"{NAME}-grpc", grpc_server, settings.bind_host, settings.ingest_grpc_port),
    ]
    if shared and worker_index() == 0:
        components.append(WorkerProcesses(settings.ingest_workers))
    return components


def main() -> None:
    run_service(NAME, NEEDS, build)
