"""Wires the alert service. A rule goes: evaluate (evaluate.py, on a timer: readings.py reads the
aggregator's rollups, conditions.py judges, states.py moves the state machine) → notify (notify.py:
the event and its outbox rows, in one transaction) → deliver (deliver.py: signed webhooks, Slack,
Alertmanager, retried until 2xx). Regressions and rollbacks from the bus take decisions.py to the
same notify step. The API (api.py) holds rules, events and silences."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from litestar.di import Provide

from services.alert.api import EventController, RuleController, SilenceController
from services.alert.decisions import DecisionSink
from services.alert.deliver import Sender
from services.alert.evaluate import Evaluator
from services.common.bus import Topology, run_pull_consumer
from services.common.http import build_http_app, project_routes
from services.common.runtime import Component, HttpServer, Needs, Resources, Worker, run_service

NAME = "alert"
NEEDS = Needs(postgres=True, nats=True)
DECISION_BATCH = 64


async def build(resources: Resources) -> Sequence[Component]:
    settings = resources.settings
    pool, bus = resources.pool, resources.bus
    assert pool is not None and bus is not None
    evaluator = Evaluator(pool, settings)
    sender = Sender(pool, settings)
    sink = DecisionSink(pool, bus, evaluator.generator_url(None))

    async def decisions(stopping: asyncio.Event) -> None:
        stream = bus.topology.decisions_stream
        await run_pull_consumer(bus, stream, Topology.ALERT_DECISIONS, sink.handle, stopping, batch=DECISION_BATCH)

    app = build_http_app(
        resources,
        [RuleController, EventController, SilenceController, *project_routes()],
        title="Vane alerts",
        dependencies={"pool": Provide(lambda: pool, use_cache=True, sync_to_thread=False)},
    )
    return [
        HttpServer(f"{NAME}-http", app, settings.bind_host, settings.alert_port),
        Worker(f"{NAME}-evaluate", evaluator.run),
        Worker(f"{NAME}-decisions", decisions),
        Worker(f"{NAME}-deliver", sender.run),
    ]


def main() -> None:
    run_service(NAME, NEEDS, build)
