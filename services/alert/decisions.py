"""Regressions and rollbacks from the bus (the aggregator's and the registry's decisions) become
firing events, with the comparison attached.

Where they go: to the channels of the project's rules whose scope could hold the decision, that is
rules that name no app version or model (those watch another axis) and whose prompt, label and
prompt version, where given, are the decision's (its prompt, its label, its from or to version).
A project with no such rule records the event and sends it nowhere. The decision's `id` is the
idempotency key: a redelivered message records nothing twice and sends nothing twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import msgspec
from nats.aio.msg import Msg

from services.aggregator.store import Conn
from services.alert import notify
from services.common.bus import Bus
from services.common.logs import get_logger

log = get_logger(component="alert-decisions")


class Decision(msgspec.Struct):
    kind: Literal["regression", "rollback"]
    project_id: str | int  # a project's UUID (an int: the UUID's 128-bit integer)
    id: str
    prompt: str
    label: str | None = None
    from_version: int | None = None
    to_version: int | None = None
    metric: str | None = None
    detected_at: str | None = None
    comparison: dict[str, Any] | None = None
    reason: str | None = None

    @property
    def project(self) -> uuid.UUID:
        return uuid.UUID(int=self.project_id) if isinstance(self.project_id, int) else uuid.UUID(self.project_id)


def matches(scope: dict[str, Any], d: Decision) -> bool:
    if scope.get("app_version") is not None or scope.get("model") is not None:
        return False
    if scope.get("prompt") not in (None, d.prompt):
        return False
    if scope.get("label") not in (None, d.label):
        return False
    return scope.get("prompt_version") in (None, d.from_version, d.to_version)


async def targets(conn: Conn, d: Decision) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT spec::text AS spec FROM alert_rules WHERE project_id = $1", d.project)
    found: list[dict[str, Any]] = []
    for r in rows:
        spec = json.loads(r["spec"])
        if matches(spec.get("scope") or {}, d):
            found.extend(spec.get("channels") or [])
    return found


class DecisionSink:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, generator_url: str) -> None:
        self.pool = pool
        self.bus = bus
        self.generator_url = generator_url

    async def handle(self, msgs: Sequence[Msg]) -> None:
        """Record each decision (once) and queue its notifications; committed before the batch is acked."""
        decisions: list[Decision] = []
        for msg in msgs:
            try:
                d = msgspec.json.decode(msg.data, type=Decision)
                d.project  # noqa: B018 - a malformed project id is refused here, not mid-transaction
                decisions.append(d)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                await self.bus.dead_letter(self.bus.topology.decisions_stream, msg, f"not a decision: {exc}")
        async with self.pool.acquire() as conn, conn.transaction():
            for d in decisions:
                exists = await conn.fetchval("SELECT 1 FROM projects WHERE id = $1", d.project)
                if not exists:
                    log.warning("decision_for_unknown_project", project=str(d.project), id=d.id)
                    continue
                await self._record(conn, d)

    async def _record(self, conn: Conn, d: Decision) -> None:
        severity = "critical" if d.kind == "rollback" else "warning"
        comparison = d.comparison or {}
        event = {
            "kind": d.kind,
            "state": "firing",
            "severity": severity,
            "value": comparison.get("relative_difference"),
            "details": {"p_value": comparison.get("p_value")} if comparison.get("p_value") is not None else {},
            "started_at": d.detected_at or datetime.now(UTC).isoformat(),
            "decision": msgspec.to_builtins(d),
        }
        event["decision"]["project_id"] = str(d.project)
        found = await targets(conn, d)
        event_id = await notify.record(
            conn, d.project, event, found, True, self.generator_url, datetime.now(UTC), decision_id=d.id
        )
        if event_id is not None:
            log.info("decision_recorded", kind=d.kind, id=d.id, channels=len(found))
