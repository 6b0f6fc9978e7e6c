"""Keys and projects: key pairs, the three header forms, and who a request is.

Every HTTP and gRPC edge calls `Authenticator.principal_for(headers)`; it answers the key's project,
public key and scopes, or raises Unauthenticated. Lookups are cached in the process for a few
seconds so that a hot path (ingest at tens of thousands of spans a second) does not ask Postgres
for every request; a revocation is announced on core NATS and empties every replica's cache at
once, and the short cache bounds how long a lost announcement can keep a revoked key alive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.common.errors import NotFound, Unauthenticated
from services.common.logs import get_logger
from services.common.scopes import Scope, ordered

if TYPE_CHECKING:
    from services.common.bus import Bus

PUBLIC_PREFIX = "pk-vane-"
SECRET_PREFIX = "sk-vane-"
# How long a replica trusts a lookup: the longest a revoked key keeps working when the NATS notice
# of its revocation is lost. At ingest's request rate this costs one Postgres lookup per key and
# process every few seconds.
CACHE_SECONDS = 5.0
_MISS_CACHE_SECONDS = 2.0

log = get_logger(component="auth")
Conn = asyncpg.Connection | PoolConnectionProxy


@dataclass(frozen=True)
class KeyPair:
    public_key: str
    secret_key: str


@dataclass(frozen=True)
class Principal:
    """Who a request is: a key of one project, and what it may do."""

    project_id: uuid.UUID
    public_key: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a secret, and the public key when the header form carries one."""

    secret_key: str
    public_key: str | None = None


def new_key_pair() -> KeyPair:
    return KeyPair(PUBLIC_PREFIX + secrets.token_hex(16), SECRET_PREFIX + secrets.token_hex(32))


def hash_secret(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode()).hexdigest()


def credentials_from_headers(headers: Mapping[str, str]) -> Credentials:
    """Read any of the three forms docs/reference.md names; header names are matched case-insensitively."""
    lowered = {k.lower(): v for k, v in headers.items()}
    authorization = lowered.get("authorization", "").strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return Credentials(secret_key=value)
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthenticated("the Basic authorization header is not base64 of public:secret") from None
            public, sep, secret = decoded.partition(":")
            if not sep or not secret:
                raise Unauthenticated("the Basic authorization header must carry public_key:secret_key")
            return Credentials(secret_key=secret, public_key=public)
        raise Unauthenticated("the authorization header must be 'Bearer <secret key>' or 'Basic …'")
    secret = lowered.get("x-secret-key", "").strip()
    if secret:
        return Credentials(secret_key=secret, public_key=lowered.get("x-api-key", "").strip() or None)
    raise Unauthenticated(
        "missing API key: send 'Authorization: Bearer <secret key>', Basic public:secret, or X-Api-Key and X-Secret-Key"
    )


class Authenticator:
    """Resolves credentials to a Principal, with a small in-process cache."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        # bumped by every revocation notice: caches built on top (the registry's gRPC callers) compare it
        self.generation = 0

    async def project_for(self, headers: Mapping[str, str]) -> uuid.UUID:
        return (await self.principal_for(headers)).project_id

    async def principal_for(self, headers: Mapping[str, str]) -> Principal:
        return await self.principal_for_credentials(credentials_from_headers(headers))

    async def project_for_credentials(self, creds: Credentials) -> uuid.UUID:
        return (await self.principal_for_credentials(creds)).project_id

    async def principal_for_credentials(self, creds: Credentials) -> Principal:
        digest = hash_secret(creds.secret_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            principal = await self._lookup(digest)
            ttl = CACHE_SECONDS if principal else _MISS_CACHE_SECONDS
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + ttl, principal)
        if principal is None or (
            creds.public_key is not None and not hmac.compare_digest(creds.public_key, principal.public_key)
        ):
            raise Unauthenticated("invalid API key")
        return principal

    async def _lookup(self, digest: str) -> Principal | None:
        # The index finds the row by the hash of the secret; the hash is compared again in constant
        # time, so how long a refusal takes says nothing about how close a guess came.
        row = await self._pool.fetchrow(
            """SELECT project_id, public_key, secret_hash, scopes FROM api_keys
               WHERE secret_hash = $1 AND revoked_at IS NULL""",
            digest,
        )
        if row is None or not hmac.compare_digest(row["secret_hash"], digest):
            return None
        return Principal(row["project_id"], row["public_key"], frozenset(Scope(s) for s in row["scopes"]))

    def forget(self) -> None:
        """Drop every cached lookup: a key was revoked somewhere."""
        self._cache.clear()
        self.generation += 1

    async def follow_revocations(self, bus: Bus) -> None:
        """Empty the cache whenever any replica announces a revoked key (core NATS, not persisted)."""

        async def on_notice(_: Any) -> None:
            self.forget()

        await bus.nc.subscribe(bus.topology.keys_revoked_subject, cb=on_notice)


@dataclass(frozen=True)
class KeyRecord:
    public_key: str
    name: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None


async def create_key(conn: Conn, project_id: uuid.UUID, name: str, scopes: frozenset[Scope]) -> KeyPair:
    """A new key pair of the project with these scopes; the secret is returned once and never stored."""
    keys = new_key_pair()
    await conn.execute(
        "INSERT INTO api_keys (public_key, secret_hash, project_id, name, scopes) VALUES ($1, $2, $3, $4, $5)",
        keys.public_key,
        hash_secret(keys.secret_key),
        project_id,
        name,
        ordered(scopes),
    )
    return keys


async def list_keys(conn: Conn, project_id: uuid.UUID) -> list[KeyRecord]:
    rows = await conn.fetch(
        """SELECT public_key, name, scopes, created_at, revoked_at FROM api_keys
           WHERE project_id = $1 ORDER BY created_at, public_key""",
        project_id,
    )
    return [
        KeyRecord(
            r["public_key"],
            r["name"],
            ordered(Scope(s) for s in r["scopes"]),
            r["created_at"].isoformat(),
            r["revoked_at"].isoformat() if r["revoked_at"] else None,
        )
        for r in rows
    ]


async def revoke_key(conn: Conn, project_id: uuid.UUID, public_key: str) -> str:
    """Revoke one of the project's keys (idempotent); answer its secret's hash. Another project's key is NotFound."""
    digest = await conn.fetchval(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
           WHERE project_id = $1 AND public_key = $2 RETURNING secret_hash""",
        project_id,
        public_key,
    )
    if digest is None:
        raise NotFound(f"key {public_key} not found")
    return str(digest)


async def announce_revocation(bus: Bus, public_key: str) -> None:
    """Tell every replica to drop its cached lookups; their short cache covers a lost notice."""
    try:
        await bus.nc.publish(bus.topology.keys_revoked_subject, public_key.encode())
        await bus.nc.flush(timeout=2)
    except Exception as exc:  # NATS away: the cache time still bounds the key's life
        log.warning("revocation_notice_failed", public_key=public_key, error=str(exc))


async def create_project(conn: asyncpg.Connection, name: str) -> tuple[uuid.UUID, KeyPair]:
    """Create a project and its first key pair; the secret is returned once and never stored."""
    keys = new_key_pair()
    project_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute("INSERT INTO projects (id, name) VALUES ($1, $2)", project_id, name)
        await conn.execute(
            "INSERT INTO api_keys (public_key, secret_hash, project_id) VALUES ($1, $2, $3)",
            keys.public_key,
            hash_secret(keys.secret_key),
            project_id,
        )
    return project_id, keys


async def bootstrap_project(conn: asyncpg.Connection, name: str, public_key: str, secret_key: str) -> uuid.UUID:
    """Make sure the project and this key exist: idempotent, and safe when replicas race.

    ON CONFLICT makes the racing inserts harmless; a key already bound to another project is
    refused rather than silently moved.
    """
    if not public_key.startswith(PUBLIC_PREFIX) or not secret_key.startswith(SECRET_PREFIX):
        raise SystemExit(
            f"VANE_INIT_PUBLIC_KEY must start with {PUBLIC_PREFIX} and VANE_INIT_SECRET_KEY with {SECRET_PREFIX}"
        )
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO projects (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            uuid.uuid4(),
            name,
        )
        project_id = await conn.fetchval("SELECT id FROM projects WHERE name = $1", name)
        await conn.execute(
            """INSERT INTO api_keys (public_key, secret_hash, project_id, note)
               VALUES ($1, $2, $3, 'bootstrap') ON CONFLICT DO NOTHING""",
            public_key,
            hash_secret(secret_key),
            project_id,
        )
        owner = await conn.fetchval("SELECT project_id FROM api_keys WHERE public_key = $1", public_key)
        if owner != project_id:
            raise SystemExit(f"VANE_INIT_PUBLIC_KEY {public_key} already belongs to another project")
        stored_hash = await conn.fetchval("SELECT secret_hash FROM api_keys WHERE public_key = $1", public_key)
        if stored_hash != hash_secret(secret_key):
            raise SystemExit(f"VANE_INIT_SECRET_KEY does not match the stored secret of {public_key}")
    return uuid.UUID(str(project_id))
