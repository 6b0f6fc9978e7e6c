"""The registry's two caches in front of Postgres: this process's memory, then Redis.

A change drops a prompt's entries everywhere (here, in Redis, and in every replica through the
change feed). Each prompt carries a generation, bumped on every drop: a read that started before
a drop does not store what it read, so a slow reader cannot put a stale answer back.
Redis is optional: when it fails, it is skipped for a moment and Postgres answers.
"""

from __future__ import annotations

import json
import time
import uuid

import redis.asyncio as aioredis
from prometheus_client import Counter

from services.common.auth import Principal
from services.common.cache import cache_key
from services.common.logs import get_logger
from services.common.scopes import Scope, ordered
from services.common.settings import Settings
from services.registry.resolution import Resolution

log = get_logger(component="registry-cache")

LOCAL_TTL_SECONDS = 5.0  # bounds what a missed change message can cost; changes drop entries at once
REDIS_TTL_SECONDS = 3600
KEY_TTL_SECONDS = 600
REDIS_PAUSE_SECONDS = 1.0  # after a Redis error, how long reads and writes skip it
_LOCAL_MAX = 50_000

LocalKey = tuple[uuid.UUID, str, str]  # project, prompt name, selector
REDIS_ERRORS = Counter("vane_registry_redis_errors_total", "Redis calls that failed and fell back to Postgres")


def selector(label: str | None, version: int | None) -> str:
    return f"v:{version}" if version else f"l:{label}"


class PromptCache:
    def __init__(self, redis: aioredis.Redis | None, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._local: dict[LocalKey, tuple[float, Resolution]] = {}
        self._keys_of: dict[tuple[uuid.UUID, str], set[str]] = {}
        self._generations: dict[tuple[uuid.UUID, str], int] = {}
        self._epoch = 0
        self._redis_paused_until = 0.0

    # -- this process --------------------------------------------------------------------------
    def local(self, key: LocalKey) -> Resolution | None:
        hit = self._local.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def generation(self, project: uuid.UUID, name: str) -> tuple[int, int]:
        return self._epoch, self._generations.get((project, name), 0)

    def keep_local(self, key: LocalKey, resolution: Resolution, generation: tuple[int, int]) -> None:
        if generation != self.generation(key[0], key[1]):
            return
        if len(self._local) >= _LOCAL_MAX:
            self.clear_local()
        self._local[key] = (time.monotonic() + LOCAL_TTL_SECONDS, resolution)
        self._keys_of.setdefault((key[0], key[1]), set()).add(key[2])

    def drop_local(self, project: uuid.UUID, name: str) -> None:
        prompt = (project, name)
        self._generations[prompt] = self._generations.get(prompt, 0) + 1
        for sel in self._keys_of.pop(prompt, ()):
            self._local.pop((project, name, sel), None)

    def clear_local(self) -> None:
        """Forget everything: after the change feed may have missed messages."""
        self._epoch += 1
        self._local.clear()
        self._keys_of.clear()

    # -- Redis -----------------------------------------------------------------------------------
    def _redis_usable(self) -> aioredis.Redis | None:
        if self._redis is None or time.monotonic() < self._redis_paused_until:
            return None
        return self._redis

    def _redis_failed(self, op: str, exc: Exception) -> None:
        REDIS_ERRORS.inc()
        if time.monotonic() >= self._redis_paused_until:
            log.warning("redis_unavailable", op=op, error=str(exc) or type(exc).__name__)
        self._redis_paused_until = time.monotonic() + REDIS_PAUSE_SECONDS

    def _prompt_key(self, project: uuid.UUID, name: str) -> str:
        return cache_key(self._settings, "prompt", str(project), name)

    async def remote(self, project: uuid.UUID, name: str, sel: str) -> Resolution | None:
        client = self._redis_usable()
        if client is None:
            return None
        try:
            data = await client.hget(self._prompt_key(project, name), sel)
        except Exception as exc:
            self._redis_failed("read", exc)
            return None
        return Resolution.decode(name, data.encode() if isinstance(data, str) else data) if data else None

    async def keep_remote(
        self, project: uuid.UUID, name: str, sel: str, resolution: Resolution, generation: tuple[int, int]
    ) -> None:
        client = self._redis_usable()
        if client is None or generation != self.generation(project, name):
            return
        key = self._prompt_key(project, name)
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hset(key, sel, resolution.encode())
                pipe.expire(key, REDIS_TTL_SECONDS)
                await pipe.execute()
        except Exception as exc:
            self._redis_failed("write", exc)

    async def drop_remote(self, project: uuid.UUID, name: str) -> None:
        client = self._redis_usable()
        if client is None:
            return
        try:
            await client.delete(self._prompt_key(project, name))
        except Exception as exc:
            self._redis_failed("drop", exc)

    # -- keys, so that reads Redis holds are answered while Postgres is down ----------------------
    async def remember_key(self, secret_hash: str, principal: Principal) -> None:
        client = self._redis_usable()
        if client is None:
            return
        value = json.dumps(
            {
                "project": str(principal.project_id),
                "public_key": principal.public_key,
                "scopes": ordered(principal.scopes),
            }
        )
        try:
            await client.set(cache_key(self._settings, "key", secret_hash), value, ex=KEY_TTL_SECONDS)
        except Exception as exc:
            self._redis_failed("write", exc)

    async def remembered_key(self, secret_hash: str) -> Principal | None:
        client = self._redis_usable()
        if client is None:
            return None
        try:
            value = await client.get(cache_key(self._settings, "key", secret_hash))
        except Exception as exc:
            self._redis_failed("read", exc)
            return None
        try:
            known = json.loads(value) if value else None
            if not isinstance(known, dict):
                return None  # nothing, or a value from before scopes: not known well enough to trust
            scopes = frozenset(Scope(s) for s in known["scopes"])
            return Principal(uuid.UUID(known["project"]), str(known["public_key"]), scopes)
        except (ValueError, KeyError, TypeError):
            return None

    async def forget_key(self, secret_hash: str) -> None:
        """A revoked key must not be answered from Redis while Postgres is down."""
        client = self._redis_usable()
        if client is None:
            return
        try:
            await client.delete(cache_key(self._settings, "key", secret_hash))
        except Exception as exc:
            self._redis_failed("drop", exc)
