"""The alerts API: rules (create, list, read, change, delete), their events, and silences. Every read
and write is of the caller's project: another project's rule or silence answers 404."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.exceptions import ValidationException
from litestar.params import Parameter

from services.aggregator.store import Conn
from services.alert import rules, silences
from services.alert.rules import Rule, RuleBody, channel_key
from services.common.errors import Invalid, NotFound

MASK = "********"
_RULE_COLUMNS = "id, spec::text AS spec, state, level, since, last_value, evaluated_at, created_at, updated_at"


class RuleView(RuleBody, kw_only=True, omit_defaults=False):
    """A rule as stored, with where its state machine stands (webhook secrets are masked)."""

    id: str
    state: Literal["ok", "pending", "firing", "resolved"]
    level: str | None = None
    since: str | None = None
    last_value: float | None = None
    evaluated_at: str | None = None
    created_at: str
    updated_at: str


class RuleList(msgspec.Struct):
    rules: list[RuleView]


class Event(msgspec.Struct):
    id: int
    kind: str
    state: str
    severity: str
    at: str
    rule: str | None
    value: float | None
    silenced: bool
    notified: bool
    body: dict[str, Any]


class EventList(msgspec.Struct):
    events: list[Event]


class Silence(msgspec.Struct):
    id: str
    matchers: list[silences.Matcher]
    until: str
    comment: str
    created_at: str


class SilenceList(msgspec.Struct):
    silences: list[Silence]


def _refused(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A body or parameter the decoder refused: 400 naming the field first, as every other refusal."""
    assert isinstance(exc, ValidationException)
    extra = exc.extra if isinstance(exc.extra, list) and exc.extra else [{"message": exc.detail}]
    first = extra[0] if isinstance(extra[0], dict) else {"message": str(extra[0])}
    error = rules.refusal(str(first.get("key") or ""), str(first.get("message") or exc.detail))
    return Response(error.body(), status_code=400)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _view(row: asyncpg.Record | None) -> RuleView:
    assert row is not None
    spec = json.loads(row["spec"])
    for ch in spec.get("channels", []):
        if ch.get("secret"):
            ch["secret"] = MASK
    return msgspec.convert(
        {
            **spec,
            "id": str(row["id"]),
            "state": row["state"],
            "level": row["level"],
            "since": _iso(row["since"]),
            "last_value": row["last_value"],
            "evaluated_at": _iso(row["evaluated_at"]),
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        },
        RuleView,
    )


def _unmask(rule: Rule, stored: dict[str, Any]) -> Rule:
    """A PATCH that sends back a masked secret keeps the stored secret of the same channel."""
    kept = {(c["type"], c["url"]): c.get("secret") for c in stored.get("channels", [])}
    for ch in rule.body.channels:
        if ch.secret == MASK:
            ch.secret = kept.get((ch.type, ch.url))
            if not ch.secret:
                raise Invalid("channels: a masked secret names no stored channel", {"field": "channels"})
    return rule


async def _enable_channels(conn: Conn, project: uuid.UUID, rule: Rule) -> None:
    """Saving a rule enables its channels again (a disabled one was fixed, or is tried anew)."""
    keys = [channel_key(c) for c in rule.body.channels]
    if keys:
        await conn.execute(
            "DELETE FROM alert_channels WHERE project_id = $1 AND channel_key = ANY($2::text[])", project, keys
        )


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value} not found") from None


def _moment(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{field}: not an ISO 8601 time: {value!r}", {"field": field}) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class RuleController(Controller):
    path = "/api/v1/alerts/rules"
    tags = ["alerts"]
    exception_handlers = {ValidationException: _refused}

    @post("/", status_code=201)
    async def create_rule(self, pool: asyncpg.Pool, project_id: uuid.UUID, data: RuleBody) -> RuleView:
        """Create a rule; 400 names the field at fault."""
        rule = rules.validate(data)
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"INSERT INTO alert_rules (id, project_id, name, spec) VALUES ($1, $2, $3, $4::jsonb) "
                f"RETURNING {_RULE_COLUMNS}",
                uuid.uuid4(),
                project_id,
                rule.body.name,
                json.dumps(rules.to_spec(rule)),
            )
            await _enable_channels(conn, project_id, rule)
        return _view(row)

    @get("/")
    async def list_rules(self, pool: asyncpg.Pool, project_id: uuid.UUID) -> RuleList:
        rows = await pool.fetch(
            f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE project_id = $1 ORDER BY created_at, id", project_id
        )
        return RuleList([_view(r) for r in rows])

    @get("/{rule_id:str}")
    async def get_rule(self, pool: asyncpg.Pool, project_id: uuid.UUID, rule_id: str) -> RuleView:
        row = await pool.fetchrow(
            f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE project_id = $1 AND id = $2",
            project_id,
            _uuid(rule_id, "rule"),
        )
        if row is None:
            raise NotFound(f"rule {rule_id} not found")
        return _view(row)

    @patch("/{rule_id:str}")
    async def update_rule(
        self, pool: asyncpg.Pool, project_id: uuid.UUID, rule_id: str, request: Request[Any, Any, Any]
    ) -> RuleView:
        """Change some of a rule's fields; the state machine starts again at ok."""
        async with pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval(
                "SELECT spec::text FROM alert_rules WHERE project_id = $1 AND id = $2 FOR UPDATE",
                project_id,
                _uuid(rule_id, "rule"),
            )
            if stored is None:
                raise NotFound(f"rule {rule_id} not found")
            spec = json.loads(stored)
            rule = _unmask(rules.merged(spec, await request.body()), spec)
            row = await conn.fetchrow(
                "UPDATE alert_rules SET name = $3, spec = $4::jsonb, updated_at = now(), state = 'ok', level = NULL, "
                f"since = NULL, active_at = NULL, evaluated_at = NULL WHERE project_id = $1 AND id = $2 "
                f"RETURNING {_RULE_COLUMNS}",
                project_id,
                uuid.UUID(rule_id),
                rule.body.name,
                json.dumps(rules.to_spec(rule)),
            )
            await _enable_channels(conn, project_id, rule)
        return _view(row)

    @delete("/{rule_id:str}", status_code=204)
    async def delete_rule(self, pool: asyncpg.Pool, project_id: uuid.UUID, rule_id: str) -> None:
        done = await pool.fetchval(
            "DELETE FROM alert_rules WHERE project_id = $1 AND id = $2 RETURNING 1", project_id, _uuid(rule_id, "rule")
        )
        if not done:
            raise NotFound(f"rule {rule_id} not found")


class EventController(Controller):
    path = "/api/v1/alerts/events"
    tags = ["alerts"]
    exception_handlers = {ValidationException: _refused}

    @get("/")
    async def list_events(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        rule: Annotated[str | None, Parameter(description="only this rule's events")] = None,
        event_state: Annotated[
            str | None, Parameter(query="state", description="pending, firing, resolved, ok")
        ] = None,
        kind: Annotated[str | None, Parameter(description="rule, regression, rollback, channel_disabled")] = None,
        start: Annotated[str | None, Parameter(query="from", description="ISO 8601, inclusive")] = None,
        end: Annotated[str | None, Parameter(query="to", description="ISO 8601, exclusive")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 200,
    ) -> EventList:
        """The project's events, newest first."""
        rule_id = None
        if rule is not None:
            try:
                rule_id = uuid.UUID(rule)
            except ValueError:
                raise Invalid(f"rule: not a rule id: {rule!r}", {"field": "rule"}) from None
        rows = await pool.fetch(
            "SELECT id, kind, state, severity, at, rule_id, value, silenced, notified, body::text AS body "
            "FROM alert_events WHERE project_id = $1 AND ($2::uuid IS NULL OR rule_id = $2) "
            "AND ($3::text IS NULL OR state = $3) AND ($4::text IS NULL OR kind = $4) "
            "AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6) "
            "ORDER BY at DESC, id DESC LIMIT $7",
            project_id,
            rule_id,
            event_state,
            kind,
            _moment(start, "from"),
            _moment(end, "to"),
            limit,
        )
        return EventList(
            [
                Event(
                    r["id"],
                    r["kind"],
                    r["state"],
                    r["severity"],
                    r["at"].isoformat(),
                    str(r["rule_id"]) if r["rule_id"] else None,
                    r["value"],
                    r["silenced"],
                    r["notified"],
                    json.loads(r["body"]),
                )
                for r in rows
            ]
        )


def _silence(row: asyncpg.Record | None) -> Silence:
    assert row is not None
    return msgspec.convert(silences.view(row), Silence)


class SilenceController(Controller):
    path = "/api/v1/alerts/silences"
    tags = ["alerts"]
    exception_handlers = {ValidationException: _refused}

    @post("/", status_code=201)
    async def create_silence(self, pool: asyncpg.Pool, project_id: uuid.UUID, data: silences.SilenceBody) -> Silence:
        """Silence the events whose labels all the matchers match, until `until`."""
        body = data
        silences.validate(body, datetime.now(UTC))
        row = await pool.fetchrow(
            "INSERT INTO alert_silences (id, project_id, matchers, until, comment) VALUES ($1, $2, $3::jsonb, $4, $5) "
            "RETURNING id, matchers::text AS matchers, until, comment, created_at",
            uuid.uuid4(),
            project_id,
            msgspec.json.encode(body.matchers).decode(),
            body.until,
            body.comment,
        )
        return _silence(row)

    @get("/")
    async def list_silences(self, pool: asyncpg.Pool, project_id: uuid.UUID) -> SilenceList:
        rows = await pool.fetch(
            "SELECT id, matchers::text AS matchers, until, comment, created_at FROM alert_silences "
            "WHERE project_id = $1 AND until > now() ORDER BY created_at",
            project_id,
        )
        return SilenceList([_silence(r) for r in rows])

    @delete("/{silence_id:str}", status_code=204)
    async def delete_silence(self, pool: asyncpg.Pool, project_id: uuid.UUID, silence_id: str) -> None:
        done = await pool.fetchval(
            "DELETE FROM alert_silences WHERE project_id = $1 AND id = $2 RETURNING 1",
            project_id,
            _uuid(silence_id, "silence"),
        )
        if not done:
            raise NotFound(f"silence {silence_id} not found")
