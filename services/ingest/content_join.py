"""The join of GenAI log events to their spans, across requests: `/v1/logs` keeps each span's
pieces of content in Redis for a few minutes; a trace request of a project that sent some fills
the input and output its spans lack, then the pieces go once the spans are durable.

An instrumentation emits a span's events while the span is open, and a log batch is exported
sooner than a span batch (1 s against 5 s by OpenTelemetry's defaults), so the content is usually
waiting when its span arrives; a span that comes first keeps no content. Redis is a cache here
too: without it the logs are refused with 503 (the exporter retries) and spans flow unjoined.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.common.errors import Unavailable
from services.common.logs import get_logger
from services.ingest.genai_events import Piece, SpanKey, assemble
from services.ingest.normalise import SpanGroup

KEEP_SECONDS = 300  # a span exported this much later than its events finds them no more
_PENDING_CHECK_SECONDS = 5.0  # how long a process trusts what it learnt of a project's pending events
_UNREACHABLE_SECONDS = 30.0  # with Redis down, trace requests ask again this seldom (each try may wait 0.5 s)
JOINED = Counter("vane_ingest_genai_events_joined_total", "spans given their input or output from GenAI log events")
log = get_logger(component="content_join")


class ContentJoin:
    def __init__(self, redis: aioredis.Redis | None, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self._pending: dict[uuid.UUID, tuple[float, bool]] = {}  # project -> (until, has pending events)

    def _key(self, project: uuid.UUID, span: SpanKey | None = None) -> str:
        base = f"{self._namespace}:genai-events:{project}"
        return base if span is None else f"{base}:{span[0].hex()}{span[1].hex()}"

    async def keep(self, project: uuid.UUID, found: Mapping[SpanKey, Sequence[Piece]]) -> None:
        """Hold the pieces until their spans come; Unavailable (503) when Redis cannot take them."""
        if not found:
            return
        if self._redis is None:
            raise Unavailable("GenAI log events need Redis to wait for their spans, and this ingest has none")
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for span, got in found.items():
                    key = self._key(project, span)
                    pipe.rpush(key, *(json.dumps(piece) for piece in got))
                    pipe.expire(key, KEEP_SECONDS)
                pipe.set(self._key(project), 1, ex=KEEP_SECONDS)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Redis cannot hold the GenAI events: {exc}") from exc
        self._pending[project] = (time.monotonic() + _PENDING_CHECK_SECONDS, True)

    async def pending(self, project: uuid.UUID) -> bool:
        """Whether the project sent GenAI events lately (asked of Redis every few seconds per process)."""
        if self._redis is None:
            return False
        known = self._pending.get(project)
        now = time.monotonic()
        if known is not None and known[0] > now:
            return known[1]
        try:
            has, trust = bool(await self._redis.exists(self._key(project))), _PENDING_CHECK_SECONDS
        except (RedisError, OSError):
            has, trust = False, _UNREACHABLE_SECONDS  # spans do not wait on Redis: they go on without content
        self._pending[project] = (now + trust, has)
        return has

    async def fill(self, project: uuid.UUID, groups: Iterable[SpanGroup]) -> list[str]:
        """Give spans that lack an input or output the content of their events; the keys used."""
        wanting = [s for g in groups for s in g.spans if "input" not in s or "output" not in s]
        if not wanting or self._redis is None:
            return []
        keys = [self._key(project, (s["trace_id"], s["span_id"])) for s in wanting]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.lrange(key, 0, -1)
                found: list[list[Any]] = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("genai_events_unreadable", error=str(exc))
            return []
        used = []
        for span, key, raw in zip(wanting, keys, found, strict=True):
            if raw:
                for field, text in assemble(cast(Piece, tuple(json.loads(p))) for p in raw).items():
                    span.setdefault(field, text)
                used.append(key)
        JOINED.inc(len(used))
        return used

    async def forget(self, keys: Sequence[str]) -> None:
        """Once the spans are durable, their events are done with (else they expire)."""
        if keys and self._redis is not None:
            try:
                await self._redis.delete(*keys)
            except (RedisError, OSError) as exc:
                log.warning("genai_events_not_forgotten", error=str(exc))
