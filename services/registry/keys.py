"""Who is calling the registry: the project of the request's key and, for writes, its public key.

Keys seen recently are remembered in Redis, so that while Postgres is down the registry still
answers the reads that Redis holds for callers it already knew.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from services.common.auth import Authenticator, credentials_from_headers, hash_secret
from services.common.errors import Unauthenticated, Unavailable
from services.registry import store
from services.registry.cache import PromptCache
from services.registry.registry import STORE_ERRORS, PromptRegistry

_REMEMBER_EVERY_SECONDS = 300.0
_RECENT_SECONDS = 30.0  # as long as the Authenticator trusts its own lookups: a revoked key stops within it
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
        # the credential headers of recent gRPC callers -> (until when, project): the hot path skips
        # parsing the headers and hashing the secret on every call
        self._recent: dict[tuple[tuple[str, str], ...], tuple[float, uuid.UUID]] = {}

    def recent(self, metadata: Metadata) -> uuid.UUID | None:
        """The project of a caller seen with these exact credentials in the last half minute, if any."""
        hit = self._recent.get(credential_values(metadata))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def project_for_metadata(self, metadata: Metadata) -> uuid.UUID:
        """As project_for, from gRPC metadata; a caller it authenticates is remembered by `recent`."""
        credentials = credential_values(metadata)
        project = await self.project_for(dict(credentials))
        if len(self._recent) >= _RECENT_MAX:
            self._recent.clear()
        self._recent[credentials] = (time.monotonic() + _RECENT_SECONDS, project)
        return project

    async def project_for(self, headers: Mapping[str, str]) -> uuid.UUID:
        """The caller's project, or Unauthenticated; Unavailable only when neither Postgres nor Redis knows."""
        try:
            project = await self._auth.project_for(headers)
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
            await self._cache.remember_key(hash_secret(secret), project)
        return project

    async def writer(self, headers: Mapping[str, str]) -> str:
        """The public key a write is recorded under (label history, version authorship)."""
        creds = credentials_from_headers(headers)
        if creds.public_key:
            return creds.public_key
        try:
            return await store.public_key_of(self._registry.pool, hash_secret(creds.secret_key))
        except STORE_ERRORS as exc:
            raise Unavailable(f"the prompt store (Postgres) is unreachable: {exc}") from exc
