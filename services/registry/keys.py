"""Who is calling the registry: the project of the request's key and, for writes, its public key.

Keys seen recently are remembered in Redis, so that while Postgres is down the registry still
answers the reads that Redis holds for callers it already knew.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from services.common.auth import Authenticator, credentials_from_headers, hash_secret
from services.common.errors import Unauthenticated, Unavailable
from services.registry import store
from services.registry.cache import PromptCache
from services.registry.registry import STORE_ERRORS, PromptRegistry

_REMEMBER_EVERY_SECONDS = 300.0


class Callers:
    def __init__(self, auth: Authenticator, registry: PromptRegistry, cache: PromptCache) -> None:
        self._auth = auth
        self._registry = registry
        self._cache = cache
        self._remembered: dict[str, float] = {}  # secret -> when it was last written to Redis

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
