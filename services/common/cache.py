"""Redis: a cache, never the source of truth. Short timeouts so that a Redis outage costs
milliseconds, not seconds, before a caller falls back to Postgres."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.common.settings import Settings


def connect_redis(settings: Settings) -> aioredis.Redis:
    """A client that connects lazily: a service starts, degraded, while Redis is down."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry_on_timeout=False,
        health_check_interval=10,
    )


def cache_key(settings: Settings, *parts: str) -> str:
    return ":".join((settings.namespace, *parts))
