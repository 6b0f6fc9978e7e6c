"""The span path of one export request, shared by OTLP/HTTP and OTLP/gRPC:
normalise → price → encode → publish, answered only once every message is durable."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from google.protobuf.message import Message
from prometheus_client import Counter

from services.common.bus import Bus
from services.ingest.models import PriceStore
from services.ingest.normalise import normalise, span_count
from services.ingest.pricing import BUILTIN, PriceTable, price_spans
from services.ingest.publish import encode_spans, message_limit, publish_all, request_digest

SPANS = Counter("vane_ingest_spans_total", "spans made durable on the span stream")
MESSAGES = Counter("vane_ingest_messages_total", "JetStream messages published for spans")


def prepare(request: Message, project_id: str, prices: Sequence[PriceTable], limit: int) -> tuple[int, list[bytes]]:
    """The pure part of the path: normalise → price → encode. Returns the span count and the messages."""
    groups = normalise(request, project_id)
    for group in groups:
        price_spans(group.spans, prices)
    return span_count(groups), encode_spans(project_id, groups, time.time_ns(), limit)


class SpanIntake:
    def __init__(self, bus: Bus, prices: PriceStore, publish_timeout: float) -> None:
        self._bus = bus
        self._prices = prices
        self._timeout = publish_timeout

    async def take(self, project_id: uuid.UUID, request: Message, body: bytes) -> int:
        """Make the request's spans durable on the span stream; return how many there were."""
        project = str(project_id)
        tables = (await self._prices.table_for(project_id), BUILTIN)
        spans, chunks = prepare(request, project, tables, message_limit(self._bus))
        if not spans:
            return 0
        await publish_all(
            self._bus, self._bus.topology.spans_subject, chunks, request_digest(project, body), self._timeout
        )
        SPANS.inc(spans)
        MESSAGES.inc(len(chunks))
        return spans
