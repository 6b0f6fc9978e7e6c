"""Who is calling the registry: the key of the request (its project and scopes) and, for writes,
its public key.

Keys seen recently are remembered in Redis, so that while Postgres is down the registry still
answers the reads that Redis holds for callers it already knew.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from services.common.auth import CACHE_SECONDS, Authenticator, Principal, credentials_from_headers, hash_secret
from services.common.errors import Unauthenticated, Unavailable
from services.common.scopes import grpc_scope, require
from services.registry import store
from services.registry.cache import PromptCache
from services.registry.registry import STORE_ERRORS, PromptRegistry

_REMEMBER_EVERY_SECONDS = 300.0
_RECENT_SECONDS = CACHE_SECONDS  # as long as the Authenticator trusts its own lookups
_RECENT_MAX = 10_000
_CREDENTIAL_HEADERS = frozenset(("authorization", "x-api-key", "x-secret-key"))
Metadata = Iterable[Any]  # gRPC metadata: (key, value) pairs


def credential_values(metadata: Metadata) -> tuple[tuple[str, str], ...]:
    """The headers of a call that carry its key, as they came: what a known caller is remembered by."""
    return tuple((key, value) for key, value in metadata if key in _CREDENTIAL_HEADERS and isinstance(value, str))


class Callers:
    def __init__(self, auth: Authenticator, registry: PromptRegistry, cache: PromptCache) -> None:
        self._auth = auth
        self._registry = registry
        self._cache = cache
        self._remembered: dict[str, float] = {}  # secret -> when it was last written to Redis
        # the credential headers of recent gRPC callers -> (until when, auth generation, principal):
        # the hot path skips parsing the headers and hashing the secret on every call; a revocation
        # anywhere bumps the generation and so forgets them all
        self._recent: dict[tuple[tuple[str, str], ...], tuple[float, int, Principal]] = {}

    def recent(self, metadata: Metadata, method: str) -> uuid.UUID | None:
        """The project of a caller seen with these exact credentials a moment ago, if its key holds
        the method's scope (Forbidden if not); None when the caller must be looked up."""
        hit = self._recent.get(credential_values(metadata))
        if hit is None or hit[0] <= time.monotonic() or hit[1] != self._auth.generation:
            return None
        require(hit[2].scopes, grpc_scope(method))
        return hit[2].project_id

    async def project_for_metadata(self, metadata: Metadata, method: str) -> uuid.UUID:
        """As principal_for, from gRPC metadata, for a call to `method`; remembered by `recent`."""
        credentials = credential_values(metadata)
        generation = self._auth.generation
        principal = await self.principal_for(dict(credentials))
        require(principal.scopes, grpc_scope(method))
        if len(self._recent) >= _RECENT_MAX:
            self._recent.clear()
        self._recent[credentials] = (time.monotonic() + _RECENT_SECONDS, generation, principal)
        return principal.project_id

    async def project_for(self, headers: Mapping[str, str]) -> uuid.UUID:
        return (await self.principal_for(headers)).project_id

    async def principal_for(self, headers: Mapping[str, str]) -> Principal:
        """The caller's key, or Unauthenticated; Unavailable only when neither Postgres nor Redis knows."""
        try:
            principal = await self._auth.principal_for(headers)
        except Unauthenticated:
            raise
        except STORE_ERRORS as exc:
            secret = credentials_from_headers(headers).secret_key
            known = await self._cache.remembered_key(hash_secret(secret))
            if known is None:
                raise Unavailable(f"the key store (Postgres) is unreachable: {exc}") from exc
            return known
        secret = credentials_from_headers(headers).secret_key
        now = time.monotonic()
        if self._remembered.get(secret, 0.0) < now:
            self._remembered[secret] = now + _REMEMBER_EVERY_SECONDS
            await self._cache.remember_key(hash_secret(secret), principal)
        return principal

    async def forget(self, secret_hash: str) -> None:
        """A key was revoked: drop it from Redis, and from this process's memory at once."""
        self._remembered.clear()
        self._auth.forget()
        await self._cache.forget_key(secret_hash)

    async def writer(self, headers: Mapping[str, str]) -> str:
        """The public key a write is recorded under (label history, version authorship)."""
        creds = credentials_from_headers(headers)
        if creds.public_key:
            return creds.public_key
        try:
            return await store.public_key_of(self._registry.pool, hash_secret(creds.secret_key))
        except STORE_ERRORS as exc:
            raise Unavailable(f"the prompt store (Postgres) is unreachable: {exc}") from exc
