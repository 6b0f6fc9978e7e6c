"""The C SpanBatch decoder against its protobuf twin: the same COPY bytes, span records, keys
and skips for any batch, and on truncated or mutated bytes it either agrees or declines."""

from __future__ import annotations

import struct
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vane.v1 import bus_pb2

from services.aggregator import decode
from services.aggregator.decode import (
    COPY_HEADER,
    COPY_TRAILER,
    RUN_COLUMNS,
    SPAN_DTYPE,
    DecodedSpans,
    Undecodable,
    decode_spans_reference,
)

try:
    from services.aggregator import _spans
except ImportError:
    _spans = None  # type: ignore[assignment]

# Only the first test runs without the C decoder: it fails then, as it should.
needs_c = pytest.mark.skipif(_spans is None, reason="the C decoder is not built")


def test_the_c_decoder_is_built_and_reads_the_fields_of_bus_proto() -> None:
    assert _spans is not None, "services/aggregator/_spans.c was not compiled (pip install -e . with gcc)"
    assert decode.ACCELERATED, "bus.proto's fields no longer match the C decoder's: decode._layout() turned it off"


PROJECT = uuid.UUID(int=0x1234)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
TEXT = st.one_of(st.sampled_from(["", "gpt-4o", "llm", "tool", "embedding"]), st.text(max_size=12))
KINDS = st.sampled_from(["", "llm", "chain", "tool", "embedding", "agent", "span", "retriever"])
NOW_NS = 1_795_000_000_000_000_000


def _optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


@st.composite
def spans(draw: st.DrawFn) -> bus_pb2.CanonicalSpan:
    start = draw(st.one_of(st.just(0), st.integers(NOW_NS - 10**12, NOW_NS + 10**12), INT64))
    fields = {
        "project_id": draw(st.sampled_from(["", "", str(PROJECT), str(uuid.UUID(int=7)), "{" + str(PROJECT) + "}"])),
        "trace_id": draw(st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20))),
        "span_id": draw(st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=9))),
        "parent_span_id": draw(st.binary(max_size=8)),
        "name": draw(TEXT),
        "kind": draw(KINDS),
        "project_name": draw(st.sampled_from(["", "bot-a", "bot-b"])),
        "app_version": draw(st.sampled_from(["a", "b", "ünï"])),
        "prompt_name": draw(st.sampled_from(["", "support"])),
        "prompt_version": draw(st.one_of(st.integers(-2, 3), INT32)),
        "model": draw(st.sampled_from(["", "gpt-4o", "nul\x00"])),
        "start_time_unix_nano": start,
        "end_time_unix_nano": draw(
            st.one_of(st.just(0), st.integers(start, start + 10**11) if start < 2**62 else INT64)
        ),
        "status": draw(st.one_of(st.sampled_from([0, 1, 2]), INT32)),
        "input": draw(TEXT),
        "attributes_json": draw(TEXT),
        "eval_tags_json": draw(TEXT),
        "ttft_ms": draw(_optional(st.floats(allow_nan=True))),
        "input_tokens": draw(_optional(INT64)),
        "output_tokens": draw(_optional(st.integers(0, 10**6))),
        "total_tokens": draw(_optional(INT64)),
        "cached_input_tokens": draw(_optional(INT64)),
        "cost": draw(_optional(st.floats(allow_nan=True))),
        "input_cost": draw(_optional(st.floats(allow_nan=True))),
        "output_cost": draw(_optional(st.floats(allow_nan=True))),
    }
    return bus_pb2.CanonicalSpan(**{k: v for k, v in fields.items() if v is not None})


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    batch = bus_pb2.SpanBatch(
        schema_version=draw(st.sampled_from([1, 1, 1, 2])),
        project_id=draw(st.sampled_from([str(PROJECT), str(PROJECT), "", "not-a-uuid"])),
        spans=draw(st.lists(spans(), max_size=12)),
        received_unix_nano=draw(st.one_of(st.just(NOW_NS), INT64)),
    )
    return batch.SerializeToString()


def _fast(data: bytes) -> DecodedSpans | None:
    """The C decoder alone (decode_spans would fall back to the reference where it declines)."""
    assert decode._LAYOUT is not None, "bus.proto no longer matches the C decoder's fields"
    raw = _spans.decode_span_batch(
        data, decode._LAYOUT, decode.SCHEMA_VERSION, decode._NOT_GENERATION_BYTES, decode.project_of
    )
    if raw is None:
        return None
    count, rows, records, keys, traces, row_projects, projects, days, skipped = raw
    reasons = [decode._skipped(name, code) for name, code in skipped]
    return DecodedSpans(count, rows, records, keys, traces, row_projects, projects, days, reasons)


def _outcome(decoder, data: bytes) -> object:  # type: ignore[no-untyped-def]
    try:
        return decoder(data)
    except Undecodable as exc:
        return ("undecodable", str(exc))


@needs_c
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_c_decoder_gives_the_reference_rows_for_any_batch(data: bytes) -> None:
    fast, reference = _outcome(_fast, data), _outcome(decode_spans_reference, data)
    if fast is None:  # it may decline only what the reference refuses
        assert isinstance(reference, tuple), "the C decoder declined a batch the reference decodes"
        return
    assert fast == reference


def _mutations(data: bytes, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = [data[:cut] for cut in rng.integers(0, len(data) + 1, 8)]
    for _ in range(24):
        mutated = bytearray(data)
        for at in rng.integers(0, len(data), int(rng.integers(1, 4))):
            mutated[at] = int(rng.integers(0, 256))
        out.append(bytes(mutated))
    return out


@needs_c
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.integers(0, 2**32 - 1))
def test_truncated_or_mutated_bytes_are_decoded_alike_or_declined(data: bytes, seed: int) -> None:
    if not data:
        return
    for mutated in _mutations(data, seed):
        fast = _outcome(_fast, mutated)
        reference = _outcome(decode_spans_reference, mutated)  # never anything but a result or Undecodable
        if fast is not None:
            assert fast == reference


def test_copy_tuples_frame_every_column_and_records_mark_the_generations() -> None:
    spans_ = [
        bus_pb2.CanonicalSpan(
            trace_id=bytes(16),
            span_id=bytes([i]) * 8,
            kind="llm",
            model="gpt-4o",
            project_name="bot",
            app_version="a",
            parent_span_id=bytes([9]) * 8,
            start_time_unix_nano=NOW_NS + i,
            end_time_unix_nano=NOW_NS + i + 2_000_000,
            input_tokens=i,
            status=2 if i == 1 else 1,
        )
        for i in range(3)
    ] + [bus_pb2.CanonicalSpan(trace_id=bytes(16), span_id=bytes(8), kind="tool", name="search", input_cost=0.25)]
    data = bus_pb2.SpanBatch(schema_version=1, project_id=str(PROJECT), spans=spans_, received_unix_nano=NOW_NS)
    decoded = decode.decode_spans(data.SerializeToString())
    assert decoded.count == 4 and decoded.projects == [PROJECT]
    assert decoded.keys == [(PROJECT, "bot", "a", "", 0, "gpt-4o"), (PROJECT, "", "", "", 0, "")]
    payload = COPY_HEADER + decoded.rows + COPY_TRAILER
    at, tuples = len(COPY_HEADER), 0
    while True:
        (columns,) = struct.unpack_from(">h", payload, at)
        at += 2
        if columns == -1:
            break
        assert columns == len(RUN_COLUMNS)
        for _ in range(columns):
            (size,) = struct.unpack_from(">i", payload, at)
            at += 4 + max(size, 0)
        tuples += 1
    assert tuples == 4 and at == len(payload)
    records = np.frombuffer(decoded.spans, dtype=SPAN_DTYPE)
    assert records["input_tokens"].tolist() == [0, 1, 2, 0]
    assert records["latency_ms"].tolist() == [2.0, 2.0, 2.0, 0.0]
    assert records["key"].tolist() == [0, 0, 0, 1]
    assert (records["flags"] & decode.IS_ERROR != 0).tolist() == [False, True, False, False]
    assert (records["flags"] & decode.IS_GENERATION != 0).tolist() == [True, True, True, False]
    assert (records["flags"] & decode.IS_ROOT != 0).tolist() == [False, False, False, True]
    assert (records["flags"] & decode.HAS_INPUT_COST != 0).tolist() == [False, False, False, True]
    assert records["input_cost"].tolist() == [0.0, 0.0, 0.0, 0.25]


def test_a_span_postgres_would_refuse_is_skipped_not_stored() -> None:
    good = {"trace_id": bytes(16), "span_id": bytes(8), "start_time_unix_nano": NOW_NS}
    data = bus_pb2.SpanBatch(
        schema_version=1,
        project_id=str(PROJECT),
        spans=[
            bus_pb2.CanonicalSpan(**good, name="ok"),
            bus_pb2.CanonicalSpan(**good, name="nul", input="a\x00b"),
            bus_pb2.CanonicalSpan(**good, name="status", status=70000),  # type: ignore[arg-type]
            bus_pb2.CanonicalSpan(trace_id=bytes(16), span_id=bytes(7), name="short id"),
        ],
    ).SerializeToString()
    decoded = decode.decode_spans(data)
    assert decoded.count == 1 and len(decoded.skipped) == 3
    assert decoded == decode_spans_reference(data)
