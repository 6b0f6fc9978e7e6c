"""Recording an event and queueing its notifications, inside the caller's transaction: the decision
(a rule's new state, a regression received) and what must be sent of it commit together, so a
crash before the commit leaves neither and a crash after leaves both (the transactional outbox)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.aggregator.store import Conn
from services.alert import channels, silences
from services.alert.channels import iso
from services.alert.rules import Channel, channel_key

_INSERT_EVENT = """
INSERT INTO alert_events (project_id, rule_id, kind, state, severity, at, value, silenced, notified, body, decision_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
ON CONFLICT (project_id, decision_id) DO NOTHING
RETURNING id
"""
_INSERT_OUTBOX = """
INSERT INTO alert_outbox (id, project_id, event_id, channel, channel_key, body, due_at)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::jsonb[], $5::text[], $6::jsonb[], $7::timestamptz[])
"""


class Known:
    """What one transaction has read of each project's silences and disabled channels (read once)."""

    def __init__(self) -> None:
        self._silences: dict[uuid.UUID, list[list[silences.Matcher]]] = {}
        self._disabled: dict[uuid.UUID, set[str]] = {}

    async def silences(self, conn: Conn, project: uuid.UUID, now: datetime) -> list[list[silences.Matcher]]:
        if project not in self._silences:
            self._silences[project] = await silences.active(conn, project, now)
        return self._silences[project]

    async def disabled(self, conn: Conn, project: uuid.UUID) -> set[str]:
        if project not in self._disabled:
            self._disabled[project] = await disabled_keys(conn, project)
        return self._disabled[project]


def message_id() -> str:
    """A webhook-id: made once, when the notification is queued, and sent with every attempt."""
    return f"msg_{uuid.uuid4().hex}"


def key_of(channel: dict[str, Any]) -> str:
    return channel_key(Channel(type=channel["type"], url=channel["url"]))


async def disabled_keys(conn: Conn, project: uuid.UUID) -> set[str]:
    rows = await conn.fetch(
        "SELECT channel_key FROM alert_channels WHERE project_id = $1 AND disabled_at IS NOT NULL", project
    )
    return {r["channel_key"] for r in rows}


def _distinct(targets: Sequence[dict[str, Any]], disabled: set[str]) -> list[tuple[dict[str, Any], str]]:
    """Each enabled channel once (two rules naming one URL send it one notification), with its key."""
    seen: set[str] = set()
    out = []
    for channel in targets:
        key = key_of(channel)
        if key not in seen and key not in disabled:
            seen.add(key)
            out.append((channel, key))
    return out


async def enqueue(
    conn: Conn,
    project: uuid.UUID,
    event_id: int | None,
    event: dict[str, Any],
    targets: Sequence[dict[str, Any]],
    generator_url: str,
    now: datetime,
    disabled: set[str] | None = None,
) -> int:
    """Queue one notification per distinct enabled channel; the number queued. `disabled`: the
    project's disabled channel keys, when the caller has read them already."""
    if disabled is None:
        disabled = await disabled_keys(conn, project)
    rows = [
        (message_id(), channel, key, channels.render(channel, event, generator_url))
        for channel, key in _distinct(targets, disabled)
    ]
    if rows:
        await conn.execute(
            _INSERT_OUTBOX,
            [r[0] for r in rows],
            [project] * len(rows),
            [event_id] * len(rows),
            [json.dumps(r[1]) for r in rows],
            [r[2] for r in rows],
            [json.dumps(r[3]) for r in rows],
            [now] * len(rows),
        )
    return len(rows)


async def record(
    conn: Conn,
    project: uuid.UUID,
    event: dict[str, Any],
    targets: Sequence[dict[str, Any]],
    notify: bool,
    generator_url: str,
    now: datetime,
    rule_id: uuid.UUID | None = None,
    decision_id: str | None = None,
    known: Known | None = None,
) -> int | None:
    """Record the event and, unless silenced or not to be notified, queue its notifications.
    None when the decision was recorded before (a redelivered message)."""
    event = {**event, "project_id": str(project), "at": iso(now)}
    known = known or Known()
    matchers = await known.silences(conn, project, now)
    silenced = silences.silenced(matchers, channels.labels_of(event))
    send = notify and not silenced and bool(targets)
    event_id = await conn.fetchval(
        _INSERT_EVENT,
        project,
        rule_id,
        event["kind"],
        event["state"],
        event["severity"],
        now,
        event.get("value"),
        silenced,
        send,
        json.dumps(event),
        decision_id,
    )
    if event_id is None:
        return None
    if send:
        disabled = await known.disabled(conn, project)
        await enqueue(conn, project, event_id, {**event, "event_id": event_id}, targets, generator_url, now, disabled)
    return int(event_id)


@dataclass(frozen=True)
class Transition:
    """A rule's event to record, and where it goes when it is to be notified."""

    project: uuid.UUID
    rule_id: uuid.UUID
    event: dict[str, Any]
    targets: Sequence[dict[str, Any]]
    notify: bool
    generator_url: str


_INSERT_EVENTS = """
INSERT INTO alert_events (id, project_id, rule_id, kind, state, severity, at, value, silenced, notified, body)
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
                     $8::float8[], $9::bool[], $10::bool[], $11::jsonb[])
"""


async def record_all(conn: Conn, transitions: Sequence[Transition], now: datetime, known: Known) -> int:
    """record() of many rules' events in three statements (ids drawn first, events, outbox rows);
    the number of notifications queued."""
    if not transitions:
        return 0
    ids = await conn.fetch(
        "SELECT nextval(pg_get_serial_sequence('alert_events', 'id')) AS id FROM generate_series(1, $1)",
        len(transitions),
    )
    events: list[tuple[Any, ...]] = []
    outbox: list[tuple[str, uuid.UUID, int, dict[str, Any], str, dict[str, Any]]] = []
    for found, t in zip(ids, transitions, strict=True):
        event_id = int(found["id"])
        event = {**t.event, "project_id": str(t.project), "at": iso(now)}
        silenced = silences.silenced(await known.silences(conn, t.project, now), channels.labels_of(event))
        send = t.notify and not silenced and bool(t.targets)
        e = event
        row = (event_id, t.project, t.rule_id, e["kind"], e["state"], e["severity"], now, e.get("value"))
        events.append((*row, silenced, send, json.dumps(event)))
        if send:
            disabled = await known.disabled(conn, t.project)
            sent = {**event, "event_id": event_id}
            for channel, key in _distinct(t.targets, disabled):
                rendered = channels.render(channel, sent, t.generator_url)
                outbox.append((message_id(), t.project, event_id, channel, key, rendered))
    await conn.execute(_INSERT_EVENTS, *(list(column) for column in zip(*events, strict=True)))
    if outbox:
        await conn.execute(
            _INSERT_OUTBOX,
            [r[0] for r in outbox],
            [r[1] for r in outbox],
            [r[2] for r in outbox],
            [json.dumps(r[3]) for r in outbox],
            [r[4] for r in outbox],
            [json.dumps(r[5]) for r in outbox],
            [now] * len(outbox),
        )
    return len(outbox)
