"""Keys and projects: key pairs, the three header forms, and who a request is.

Every HTTP and gRPC edge calls `Authenticator.project_for(headers)`; it answers the project id or
raises Unauthenticated. Lookups are cached in the process for a short while so that a hot path
(ingest at tens of thousands of spans a second) does not ask Postgres for every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from services.common.errors import Unauthenticated

PUBLIC_PREFIX = "pk-vane-"
SECRET_PREFIX = "sk-vane-"
_CACHE_SECONDS = 30.0
_MISS_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class KeyPair:
    public_key: str
    secret_key: str


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
    """Resolves credentials to a project id, with a small in-process cache."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[float, uuid.UUID | None, str | None]] = {}

    async def project_for(self, headers: Mapping[str, str]) -> uuid.UUID:
        creds = credentials_from_headers(headers)
        return await self.project_for_credentials(creds)

    async def project_for_credentials(self, creds: Credentials) -> uuid.UUID:
        digest = hash_secret(creds.secret_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            project, public = cached[1], cached[2]
        else:
            row = await self._pool.fetchrow(
                "SELECT project_id, public_key FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
                digest,
            )
            project = row["project_id"] if row else None
            public = row["public_key"] if row else None
            ttl = _CACHE_SECONDS if row else _MISS_CACHE_SECONDS
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + ttl, project, public)
        if project is None or (creds.public_key is not None and creds.public_key != public):
            raise Unauthenticated("invalid API key")
        return project


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
