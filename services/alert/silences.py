"""Silences: while one is active, events whose labels all its matchers match are recorded but sent
nowhere. A matcher is Alertmanager's: `{"name", "value", "is_regex"?, "is_equal"?}` over the event's
labels (alertname, severity, kind, rule, metric and the scope's fields: prompt, label, …)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from services.aggregator.store import Conn
from services.alert.rules import refuse


class Matcher(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True


class SilenceBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    matchers: list[Matcher]
    until: datetime
    comment: str = ""


def validate(body: SilenceBody, now: datetime) -> None:
    if not body.matchers:
        raise refuse("matchers", "at least one matcher (a silence of everything is a rule deleted)")
    for i, m in enumerate(body.matchers):
        if m.is_regex:
            try:
                re.compile(m.value)
            except re.error as exc:
                raise refuse(f"matchers[{i}].value", f"not a regular expression: {exc}") from None
    if body.until.tzinfo is None:
        raise refuse("until", "needs a time zone (…Z)")
    if body.until <= now:
        raise refuse("until", "must be in the future")


def _matches(m: Matcher, labels: dict[str, str]) -> bool:
    value = labels.get(m.name, "")
    hit = re.fullmatch(m.value, value) is not None if m.is_regex else value == m.value
    return hit if m.is_equal else not hit


def silenced(matcher_sets: Sequence[Sequence[Matcher]], labels: dict[str, str]) -> bool:
    """Whether any silence (a set of matchers, all of which must match) covers these labels."""
    return any(all(_matches(m, labels) for m in matchers) for matchers in matcher_sets)


async def active(conn: Conn, project: uuid.UUID, now: datetime) -> list[list[Matcher]]:
    rows = await conn.fetch(
        "SELECT matchers::text AS m FROM alert_silences WHERE project_id = $1 AND until > $2", project, now
    )
    return [msgspec.json.decode(r["m"], type=list[Matcher]) for r in rows]


def view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "matchers": msgspec.json.decode(row["matchers"]),
        "until": row["until"].isoformat(),
        "comment": row["comment"],
        "created_at": row["created_at"].isoformat(),
    }
