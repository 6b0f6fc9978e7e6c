"""The project's keys (POST, GET /api/v1/keys, DELETE /api/v1/keys/{public_key}) and its
audit log (GET /api/v1/audit), served by the registry; both need the admin scope (the audit log
names every key and what it did: administration, not something an app's read key should list).

A revocation drops the key from this replica's caches at once and is announced on NATS, so every
other replica of every service stops accepting it within a moment (auth.CACHE_SECONDS at most).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.status_codes import HTTP_201_CREATED

from services.common import audit
from services.common.auth import Principal, announce_revocation, create_key, list_keys, revoke_key
from services.common.bus import Bus
from services.common.scopes import ordered, parse_scopes
from services.registry.keys import Callers
from services.registry.registry import PromptRegistry

Body = dict[str, Any]


class NewKey(msgspec.Struct):
    scopes: list[str]
    name: str = ""


class KeyController(Controller):
    path = "/api/v1/keys"

    @post("/", status_code=HTTP_201_CREATED)
    async def create(self, data: NewKey, principal: Principal, registry: PromptRegistry) -> Body:
        """A new key of the caller's project; its secret is in this answer only."""
        scopes = parse_scopes(data.scopes)
        async with registry.pool.acquire() as conn, conn.transaction():
            keys = await create_key(conn, principal.project_id, data.name, scopes)
            details = {"name": data.name, "scopes": ordered(scopes)}
            await audit.record(
                conn, principal.project_id, principal.public_key, audit.KEY_CREATED, keys.public_key, details
            )
        return {
            "public_key": keys.public_key,
            "secret_key": keys.secret_key,
            "name": data.name,
            "scopes": ordered(scopes),
        }

    @get("/")
    async def list_keys(self, principal: Principal, registry: PromptRegistry) -> Body:
        async with registry.pool.acquire() as conn:
            found = await list_keys(conn, principal.project_id)
        return {"keys": [dataclasses.asdict(k) for k in found]}

    @delete("/{public_key:str}", status_code=200)
    async def revoke(
        self, public_key: str, principal: Principal, registry: PromptRegistry, callers: Callers, bus: Bus
    ) -> Body:
        async with registry.pool.acquire() as conn, conn.transaction():
            digest = await revoke_key(conn, principal.project_id, public_key)
            await audit.record(conn, principal.project_id, principal.public_key, audit.KEY_REVOKED, public_key)
        await callers.forget(digest)
        await announce_revocation(bus, public_key)
        return {"public_key": public_key, "revoked": True}


class AuditController(Controller):
    path = "/api/v1/audit"

    @get("/")
    async def entries(
        self,
        principal: Principal,
        registry: PromptRegistry,
        limit: int = 100,
        before: int | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> Body:
        """The project's audit log, newest first; pass `before` = `next_before` for the next page."""
        found = await audit.entries(
            registry.pool, principal.project_id, limit=limit, before=before, action=action, actor=actor
        )
        next_before = found[-1].id if len(found) == limit else None
        return {"entries": [e.json() for e in found], "next_before": next_before}
