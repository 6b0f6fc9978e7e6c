"""Quotas per project, counted in Redis so that every replica shares one count: spans per second and
bytes per day at ingest, judge calls per second across every evaluator.

Limits come from the project's row in `project_quotas` (set by `vane quotas set`), else from the
environment (VANE_QUOTA_SPANS_PER_SECOND, VANE_QUOTA_BYTES_PER_DAY, VANE_QUOTA_JUDGE_CALLS_PER_SECOND;
0, the default, is unlimited). A project without a limit costs no Redis call. Counters are fixed
windows (one key per project, quota and second or day), so a project over its limit touches only
its own keys and never slows another. Redis down: the quota is not enforced (logged), since
Redis is a cache in Vane, never a reason to refuse data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.common.errors import VaneError
from services.common.logs import get_logger
from services.common.settings import env_int

log = get_logger(component="quotas")

DAY_SECONDS = 86_400
_LIMITS_CACHE_SECONDS = 5.0  # how soon `vane quotas set` reaches every replica
_REDIS_PAUSE_SECONDS = 1.0  # after a Redis error, how long quotas are not counted
_JUDGE_WAITS = 60  # one-second windows a judge call waits for its turn before the span is tried later


class RateLimited(VaneError):
    """Over a quota: 429 with Retry-After (gRPC RESOURCE_EXHAUSTED with RetryInfo)."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_seconds: int, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class Limits:
    spans_per_second: int = 0
    bytes_per_day: int = 0
    judge_calls_per_second: int = 0

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            env_int("VANE_QUOTA_SPANS_PER_SECOND", 0),
            env_int("VANE_QUOTA_BYTES_PER_DAY", 0),
            env_int("VANE_QUOTA_JUDGE_CALLS_PER_SECOND", 0),
        )


@dataclass(frozen=True)
class Window:
    """A fixed window: its key suffix and the seconds until it ends."""

    suffix: str
    seconds_left: float


def window(length_seconds: int, now: float) -> Window:
    start = int(now // length_seconds) * length_seconds
    return Window(str(start), start + length_seconds - now)


class Counters:
    """Shared fixed-window counters in Redis."""

    def __init__(self, redis: aioredis.Redis | None, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self._paused_until = 0.0

    async def take(
        self, project: uuid.UUID, quota: str, amount: int, limit: int, length_seconds: int, now: float | None = None
    ) -> float | None:
        """Count `amount` against the project's `limit` per window: None when it fits, else the
        seconds until the window ends (and the amount is not counted)."""
        if self._redis is None or time.monotonic() < self._paused_until:
            return None
        current = window(length_seconds, time.time() if now is None else now)
        key = f"{self._namespace}:quota:{project}:{quota}:{current.suffix}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incrby(key, amount)
                pipe.expire(key, length_seconds + 60, nx=True)
                total, _ = await pipe.execute()
            if int(total) <= limit:
                return None
            await self._redis.decrby(key, amount)  # refused work does not use the quota up
        except Exception as exc:
            self._paused_until = time.monotonic() + _REDIS_PAUSE_SECONDS
            log.warning("quota_not_counted", quota=quota, error=str(exc))
            return None
        return current.seconds_left


class Quotas:
    """The quotas a service enforces; each check raises RateLimited or returns."""

    def __init__(self, pool: asyncpg.Pool, counters: Counters, defaults: Limits | None = None) -> None:
        self._pool = pool
        self._counters = counters
        self._defaults = defaults or Limits.from_env()
        self._cache: dict[uuid.UUID, tuple[float, Limits]] = {}

    async def limits(self, project: uuid.UUID) -> Limits:
        now = time.monotonic()
        cached = self._cache.get(project)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._pool.fetchrow(
            "SELECT spans_per_second, bytes_per_day, judge_calls_per_second FROM project_quotas WHERE project_id = $1",
            project,
        )
        d = self._defaults
        found = (
            d
            if row is None
            else Limits(
                d.spans_per_second if row["spans_per_second"] is None else row["spans_per_second"],
                d.bytes_per_day if row["bytes_per_day"] is None else row["bytes_per_day"],
                d.judge_calls_per_second if row["judge_calls_per_second"] is None else row["judge_calls_per_second"],
            )
        )
        self._cache[project] = (now + _LIMITS_CACHE_SECONDS, found)
        return found

    async def take_spans(self, project: uuid.UUID, spans: int, body_bytes: int) -> None:
        """Ingest: refuse a request that would take the project past its spans/s or bytes/day."""
        limits = await self.limits(project)
        if limits.bytes_per_day:
            wait = await self._counters.take(project, "bytes", body_bytes, limits.bytes_per_day, DAY_SECONDS)
            if wait is not None:
                raise _limited(f"the project's quota of {limits.bytes_per_day} bytes a day is used up", wait)
        if limits.spans_per_second:
            if spans > limits.spans_per_second:
                raise _limited(
                    f"a request of {spans} spans is over the project's {limits.spans_per_second} spans a second: "
                    "send smaller batches",
                    1.0,
                )
            wait = await self._counters.take(project, "spans", spans, limits.spans_per_second, 1)
            if wait is not None:
                raise _limited(f"the project is over its {limits.spans_per_second} spans a second", wait)

    async def wait_for_judge_call(self, project: uuid.UUID) -> bool:
        """Evaluator: wait until the project may make one more judge call (counted across all
        replicas); False when its turn did not come within a minute."""
        limits = await self.limits(project)
        if not limits.judge_calls_per_second:
            return True
        for _ in range(_JUDGE_WAITS):
            wait = await self._counters.take(project, "judge", 1, limits.judge_calls_per_second, 1)
            if wait is None:
                return True
            await asyncio.sleep(wait)
        return False


def _limited(message: str, wait_seconds: float) -> RateLimited:
    retry_after = max(1, int(wait_seconds + 0.999))
    return RateLimited(message, retry_after, {"retry_after_seconds": retry_after})


async def set_limits(conn: asyncpg.Connection, project: uuid.UUID, **limits: int | None) -> None:
    """Set some of a project's limits (None: back to the default, 0: unlimited)."""
    allowed = {"spans_per_second", "bytes_per_day", "judge_calls_per_second"}
    assert set(limits) <= allowed
    await conn.execute("INSERT INTO project_quotas (project_id) VALUES ($1) ON CONFLICT DO NOTHING", project)
    for column, value in limits.items():
        await conn.execute(f"UPDATE project_quotas SET {column} = $2 WHERE project_id = $1", project, value)
