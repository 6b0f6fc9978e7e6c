"""Bus payloads: compressed span batches read back byte for byte, plain (older) messages read as they
are, and a message marked compressed whose bytes are not a sane zstd frame is refused, not trusted."""

from __future__ import annotations

import os
import types

import pytest
import zstandard

from services.common.payload import ENCODING_HEADER, ZSTD, CorruptPayload, compressed, payload_of
from tests.bench.bench_ingest import unique_bodies


def _msg(data: bytes, headers: dict[str, str] | None = None) -> types.SimpleNamespace:
    return types.SimpleNamespace(data=data, headers=headers)


def test_a_compressed_request_reads_back_exactly_and_is_much_smaller() -> None:
    body = unique_bodies(1)[0]
    frame = compressed(body)
    assert frame is not None and len(frame) < len(body) / 4
    assert payload_of(_msg(frame, {ENCODING_HEADER: ZSTD, "Nats-Msg-Id": "x"})) == body


def test_a_plain_message_reads_as_it_is() -> None:
    assert payload_of(_msg(b"\x08\x01plain")) == b"\x08\x01plain"
    assert payload_of(_msg(b"\x08\x01plain", {"Nats-Msg-Id": "x"})) == b"\x08\x01plain"


def test_what_compression_would_not_shrink_is_sent_plain() -> None:
    assert compressed(os.urandom(4096)) is None


@pytest.mark.parametrize(
    "data",
    [
        b"not a zstd frame",
        zstandard.ZstdCompressor().compress(b"x" * 10_000)[:-5],  # cut short
        zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 100),  # no size: unbounded
    ],
)
def test_a_message_marked_compressed_that_does_not_decompress_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptPayload):
        payload_of(_msg(data, {ENCODING_HEADER: ZSTD}))
