"""The span path of one export request, shared by OTLP/HTTP and OTLP/gRPC:
normalise → price → redact (a project's PII rules, redact.py) → encode → publish, answered only
once every message is durable.

The first three stages run in C (canonical.py) when the accelerator is built; the Python stages
(normalise.py, pricing.py, publish.py) are the reference it matches and the path for whatever it
leaves to them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from prometheus_client import Counter

from services.common.bus import Bus
from services.common.logs import get_logger
from services.common.quotas import Quotas
from services.common.redaction import Redactor
from services.ingest.canonical import ACCELERATOR, canonical_spans
from services.ingest.content_join import ContentJoin
from services.ingest.models import PriceStore
from services.ingest.normalise import SpanGroup, normalise
from services.ingest.pricing import BUILTIN, PriceTable, price_spans
from services.ingest.publish import encode_records, message_limit, publish_all, request_digest, serialise_spans
from services.ingest.redact import RedactionStore, redact_records
from services.ingest.wire import TraceRequestLike

SPANS = Counter("vane_ingest_spans_total", "spans made durable on the span stream")
MESSAGES = Counter("vane_ingest_messages_total", "JetStream messages published for spans")

log = get_logger(component="intake")


def canonical_records(request: TraceRequestLike, project_id: str, prices: Sequence[PriceTable]) -> list[bytes]:
    """Each span's CanonicalSpan bytes: normalised, priced, encoded (in C when it can)."""
    records = canonical_spans(request, project_id, prices)
    if records is not None:
        return records
    return priced_records(normalise(request, project_id), prices)


def priced_records(groups: list[SpanGroup], prices: Sequence[PriceTable]) -> list[bytes]:
    """Normalised spans priced and encoded, in Python."""
    for group in groups:
        price_spans(group.spans, prices)
    return list(serialise_spans(groups))


def prepare(
    request: TraceRequestLike,
    project_id: str,
    prices: Sequence[PriceTable],
    limit: int,
    redactor: Redactor | None = None,
) -> tuple[int, list[bytes]]:
    """The pure part of the path: normalise → price → redact → encode. Returns the span count and the messages."""
    records = canonical_records(request, project_id, prices)
    if redactor is not None:
        records = redact_records(redactor, records)
    return len(records), encode_records(project_id, records, time.time_ns(), limit)


class SpanIntake:
    def __init__(
        self,
        bus: Bus,
        prices: PriceStore,
        publish_timeout: float,
        join: ContentJoin | None = None,
        redaction: RedactionStore | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._bus = bus
        self._prices = prices
        self._redaction = redaction
        self._quotas = quotas
        self._timeout = publish_timeout
        self._join = join
        log.info("span_path", accelerated=ACCELERATOR is not None)

    async def take(self, project_id: uuid.UUID, request: TraceRequestLike, body: bytes) -> int:
        """Make the request's spans durable on the span stream; return how many there were."""
        project = str(project_id)
        tables = (await self._prices.table_for(project_id), BUILTIN)
        redactor = await self._redaction.redactor_for(project_id) if self._redaction is not None else None
        used: list[str] = []
        if self._join is not None and await self._join.pending(project_id):
            # The project sends GenAI log events: its spans take their content (in Python, not C).
            groups = normalise(request, project)
            used = await self._join.fill(project_id, groups)
            records = priced_records(groups, tables)
            if redactor is not None:  # the joined content is redacted as any other
                records = redact_records(redactor, records)
            spans, chunks = len(records), encode_records(project, records, time.time_ns(), message_limit(self._bus))
        else:
            spans, chunks = prepare(request, project, tables, message_limit(self._bus), redactor)
        if not spans:
            return 0
        if self._quotas is not None:
            await self._quotas.take_spans(project_id, spans, len(body))
        await publish_all(
            self._bus,
            self._bus.topology.spans_subject,
            chunks,
            request_digest(project, body),
            self._timeout,
            compress=True,  # span batches are mostly text: a ninth of the bytes for NATS to store and deliver
        )
        if used and self._join is not None:
            await self._join.forget(used)
        SPANS.inc(spans)
        MESSAGES.inc(len(chunks))
        return spans
