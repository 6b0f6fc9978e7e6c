"""Compare over NATS for the other services (the registry's guarded rollouts): no service imports
another, and the bus is internal, so the answer needs no user key. Request and reply are JSON:

    {"project_id", "kind", "name"?, "a", "b", "from"?, "to"?, "metrics"?: [METRIC…], "alpha"?}
    → the body GET /api/v1/compare answers, or {"error": {"code", "message"}}
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
from nats.aio.msg import Msg

from services.aggregator import compare
from services.aggregator.query import Filters, moment
from services.common.bus import Bus
from services.common.errors import VaneError
from services.common.logs import get_logger

log = get_logger(component="compare_responder")
QUEUE = "aggregator"


async def answer(pool: asyncpg.Pool, request: dict[str, Any]) -> dict[str, Any]:
    try:
        project = uuid.UUID(str(request["project_id"]))
        filters = Filters(moment(request.get("from"), "from"), moment(request.get("to"), "to"))
        metrics = request.get("metrics")
        return await compare.compare(
            pool,
            project,
            str(request.get("kind", "prompt")),
            request.get("name"),
            str(request["a"]),
            str(request["b"]),
            filters,
            float(request.get("alpha") or 0.05),
            set(metrics) if metrics else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        return {"error": {"code": "invalid", "message": f"bad compare request: {exc!r}"}}
    except VaneError as exc:
        return exc.body()


async def serve(pool: asyncpg.Pool, bus: Bus, stopping: asyncio.Event) -> None:
    """Answer compare requests until stopping (replicas share the subject's queue group)."""

    async def on_request(msg: Msg) -> None:
        try:
            reply = await answer(pool, json.loads(msg.data))
        except json.JSONDecodeError as exc:
            reply = {"error": {"code": "invalid", "message": f"the request is not JSON: {exc}"}}
        except Exception as exc:  # Postgres away: the asker retries
            log.warning("compare_request_failed", error=str(exc))
            reply = {"error": {"code": "unavailable", "message": str(exc)}}
        await msg.respond(json.dumps(reply).encode())

    subscription = await bus.nc.subscribe(bus.topology.compare_subject, queue=QUEUE, cb=on_request)
    try:
        await stopping.wait()
    finally:
        await subscription.unsubscribe()
