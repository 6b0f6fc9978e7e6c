"""The span path of one export request, shared by OTLP/HTTP and OTLP/gRPC:
normalise → price → encode → publish, answered only once every message is durable."""

from __future__ import annotations

import time
import uuid

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import Counter

from services.common.bus import Bus
from services.ingest.models import PriceStore
from services.ingest.normalise import normalise
from services.ingest.pricing import BUILTIN, price_spans
from services.ingest.publish import encode_spans, message_limit, publish_all, request_digest

SPANS = Counter("vane_ingest_spans_total", "spans made durable on the span stream")
MESSAGES = Counter("vane_ingest_messages_total", "JetStream messages published for spans")


class SpanIntake:
    def __init__(self, bus: Bus, prices: PriceStore, publish_timeout: float) -> None:
        self._bus = bus
        self._prices = prices
        self._timeout = publish_timeout

    async def take(self, project_id: uuid.UUID, request: ExportTraceServiceRequest, body: bytes) -> int:
        """Make the request's spans durable on the span stream; return how many there were."""
        project = str(project_id)
        spans = normalise(request, project)
        if not spans:
            return 0
        price_spans(spans, (await self._prices.table_for(project_id), BUILTIN))
        chunks = encode_spans(project, spans, time.time_ns(), message_limit(self._bus))
        await publish_all(
            self._bus, self._bus.topology.spans_subject, chunks, request_digest(project, body), self._timeout
        )
        SPANS.inc(len(spans))
        MESSAGES.inc(len(chunks))
        return len(spans)
