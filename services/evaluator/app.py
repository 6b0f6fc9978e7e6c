"""Wires the evaluator service: its HTTP API and its span consumer.

spans stream ─▶ consume (decode → selection.plan → records.recorded → evaluate: rules | embedding | judge
             → records.record → publish) ─▶ scores stream; then ack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.common.http import build_http_app, project_routes
from services.common.quotas import Counters, Quotas
from services.common.runtime import Component, HttpServer, Needs, Resources, Worker, run_service
from services.evaluator.api import evaluator_routes
from services.evaluator.config import EvaluatorConfig
from services.evaluator.consume import SpanConsumer
from services.evaluator.embedding import EmbeddingBatcher
from services.evaluator.evaluate import Evaluators
from services.evaluator.judge import Judge
from services.evaluator.project_rules import RuleCache

NAME = "evaluator"
NEEDS = Needs(postgres=True, nats=True, redis=True, redis_required=False)  # Redis: judge quotas across replicas


async def build(resources: Resources) -> Sequence[Component]:
    settings = resources.settings
    assert resources.pool is not None and resources.bus is not None
    config = EvaluatorConfig.from_env()
    rules = RuleCache(resources.pool, config.rules_ttl_seconds)
    quotas = Quotas(resources.pool, Counters(resources.redis, settings.namespace))
    evaluators = Evaluators(Judge(config.judge, quotas=quotas), EmbeddingBatcher())
    consumer = SpanConsumer(resources.bus, resources.pool, evaluators, rules, config)

    async def consume(stopping: asyncio.Event) -> None:
        try:
            await consumer.run(stopping)
        finally:
            await evaluators.close()

    app = build_http_app(
        resources, [*project_routes(), *evaluator_routes(resources.pool, rules)], title="Vane evaluator"
    )
    return [
        HttpServer(f"{NAME}-http", app, settings.bind_host, settings.evaluator_port),
        Worker(f"{NAME}-spans", consume),
    ]


def main() -> None:
    run_service(NAME, NEEDS, build)
