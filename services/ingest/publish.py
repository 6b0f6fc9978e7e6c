"""Publish: a request's canonical records as few JetStream messages as its size allows, answered
only once JetStream has stored every one of them.

Messages are composed from each record's serialised bytes (a repeated protobuf field is only its
elements one after another), so a large request is split under NATS's max_payload without
re-encoding. Each message's Nats-Msg-Id derives from the request, so a client's retry of the same
request inside the stream's duplicate window is stored once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Iterable, Iterator, Sequence

from vane.v1.bus_pb2 import CanonicalSpan, Score, ScoreBatch, SpanBatch

from services.common.bus import Bus
from services.common.errors import TooLarge, Unavailable
from services.common.logs import get_logger
from services.ingest.normalise import SpanGroup

SCHEMA_VERSION = 1
_SPANS_TAG = b"\x1a"  # SpanBatch.spans: field 3, length-delimited
_SCORES_TAG = b"\x12"  # ScoreBatch.scores: field 2, length-delimited
HEADROOM = 4096  # NATS counts headers (the message id) against max_payload too

log = get_logger(component="publish")


def request_digest(project_id: str, body: bytes) -> str:
    """The same request from the same project always gives the same id."""
    # SHA-256 runs in the CPU's SHA extensions: about 2.5x blake2b's speed on the request bodies.
    digest = hashlib.sha256(project_id.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()[:32]


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = 1 << 14  # every length of up to two varint bytes
_SMALL_VARINTS = [_encode_varint(n) for n in range(_SMALL)]


@functools.cache
def _small_prefixes(tag: bytes) -> list[bytes]:
    """The field's tag and length, for every small length."""
    return [tag + varint for varint in _SMALL_VARINTS]


def compose(head: bytes, tag: bytes, items: Iterable[bytes], limit: int) -> list[bytes]:
    """`head` plus the serialised items as a repeated field, in as few messages of at most `limit` bytes as fit."""
    prefixes = _small_prefixes(tag)
    chunks: list[bytes] = []
    parts: list[bytes] = [head]
    size = len(head)
    for index, body in enumerate(items):
        length = len(body)
        prefix = prefixes[length] if length < _SMALL else tag + _encode_varint(length)
        field_size = len(prefix) + length
        if len(head) + field_size > limit:
            raise TooLarge(f"record {index} is {length} bytes, more than one bus message can carry ({limit})")
        if size + field_size > limit:
            chunks.append(b"".join(parts))
            parts, size = [head], len(head)
        parts += (prefix, body)  # the items' bytes are copied once, by the join
        size += field_size
    chunks.append(b"".join(parts))
    return chunks


def serialise_spans(groups: Iterable[SpanGroup]) -> Iterator[bytes]:
    """Each span's CanonicalSpan bytes: its group's shared fields, encoded once, then its own.

    Protobuf parses concatenated messages as one merged message, and the two sets of fields are
    disjoint, so the result reads exactly as the CanonicalSpan with all the fields set.
    """
    for group in groups:
        shared = CanonicalSpan(**group.shared).SerializeToString()
        for fields in group.spans:
            yield shared + CanonicalSpan(**fields).SerializeToString()


def encode_spans(project_id: str, groups: Sequence[SpanGroup], received_ns: int, limit: int) -> list[bytes]:
    return encode_records(project_id, serialise_spans(groups), received_ns, limit)


def encode_records(project_id: str, records: Iterable[bytes], received_ns: int, limit: int) -> list[bytes]:
    """SpanBatch messages of CanonicalSpan bytes."""
    head = SpanBatch(schema_version=SCHEMA_VERSION, project_id=project_id, received_unix_nano=received_ns)
    return compose(head.SerializeToString(), _SPANS_TAG, records, limit)


def encode_scores(scores: Sequence[Score], limit: int) -> list[bytes]:
    head = ScoreBatch(schema_version=SCHEMA_VERSION)
    return compose(head.SerializeToString(), _SCORES_TAG, (score.SerializeToString() for score in scores), limit)


def message_limit(bus: Bus) -> int:
    return max(64 * 1024, int(bus.nc.max_payload) - HEADROOM)


async def publish_all(
    bus: Bus, subject: str, chunks: Sequence[bytes], digest: str, timeout: float, compress: bool = False
) -> None:
    """Store every chunk or raise Unavailable (503): what did get stored is deduplicated on retry."""
    try:
        await asyncio.gather(
            *(
                bus.publish(subject, chunk, msg_id=f"{digest}-{i}", timeout=timeout, compress=compress)
                for i, chunk in enumerate(chunks)
            )
        )
    except Exception as exc:
        log.warning("publish_failed", subject=subject, messages=len(chunks), error=f"{type(exc).__name__}: {exc}")
        raise Unavailable(
            "the bus did not acknowledge the data in time; nothing is lost by retrying the same request",
            retry_after_seconds=2,
        ) from None
