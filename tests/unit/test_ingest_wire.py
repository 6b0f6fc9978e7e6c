"""Ingest's view of OTLP bytes: attributes read straight from their KeyValue bytes must equal what the
full protobuf parser reads, and the input/output carried once must still reach the evaluator."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from vane.v1.bus_pb2 import SpanBatch

from services.common.errors import Invalid
from services.evaluator.mapping import CARRIED, resolve
from services.evaluator.spans import from_proto
from services.ingest.decode import decode_protobuf
from services.ingest.normalise import TABLES, normalise
from services.ingest.publish import encode_spans
from services.ingest.wire import any_value, key_value
from tests.support.otlp_values import any_value_of

PROJECT = "8d6f1c9e-6a55-4f7e-9d2b-3f1f4f3f0a11"

scalars = st.one_of(
    st.text(max_size=300),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=8),
)


values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)


@given(st.text(max_size=200), values)
def test_key_values_read_from_bytes_equal_the_full_parser(key: str, value: Any) -> None:
    kv = KeyValue(key=key, value=any_value_of(value))
    assert key_value(kv.SerializeToString()) == (kv.key, any_value(kv.value))


def test_unusual_encodings_fall_back_to_the_full_parser() -> None:
    value_first = b"\x12\x03\x0a\x01x" + b"\x0a\x01k"  # value before key
    assert key_value(value_first) == ("k", "x")
    twice = b"\x0a\x01k" + b"\x12\x03\x0a\x01a" + b"\x12\x03\x0a\x01b"  # the last value field wins
    assert key_value(twice) == ("k", "b")
    assert key_value(b"\x0a\x01k") == ("k", None)


def test_an_attribute_value_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(Invalid, match="not a valid OTLP protobuf"):
        key_value(b"\x0a\x01k\x12\x04\x0a\x02\xff\xfe")


def request_of(*spans_attributes: dict[str, Any]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for attributes in spans_attributes:
        span = scope.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="chat")
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        span.attributes.extend(KeyValue(key=k, value=any_value_of(v)) for k, v in attributes.items())
    return request


def canonical(request: ExportTraceServiceRequest) -> list[Any]:
    body = request.SerializeToString()
    (message,) = encode_spans(PROJECT, normalise(decode_protobuf(body), PROJECT), 1, 1 << 20)
    return list(SpanBatch.FromString(message).spans)


def test_spans_of_one_request_keep_their_own_values() -> None:
    first = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10, "tags": ["a"]}
    second = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 20, "tags": ["a"]}
    a, b = canonical(request_of(first, second))
    assert (a.model, a.input_tokens, b.model, b.input_tokens) == ("gpt-4o", 10, "gpt-4o", 20)
    assert json.loads(a.attributes_json) == first and json.loads(b.attributes_json) == second


def test_input_and_output_travel_once_and_the_evaluator_still_reads_them() -> None:
    messages = [{"role": "assistant", "content": "Paris"}]
    attributes = {
        "input.value": "Capital of France?",
        "gen_ai.output.messages": json.dumps(messages),
        "gen_ai.input.messages": json.dumps([{"role": "user", "content": "kept: not the winner"}]),
        "custom": "x",
    }
    (span,) = canonical(request_of(attributes))
    assert span.input == "Capital of France?" and span.output == json.dumps(messages)
    kept = {"gen_ai.input.messages": attributes["gen_ai.input.messages"], "custom": "x"}
    assert json.loads(span.attributes_json) == kept
    view = from_proto(span)
    assert resolve(view, "input.value") == "Capital of France?"
    assert resolve(view, "gen_ai.output.messages.0.content") == "Paris"
    assert resolve(view, "gen_ai.input.messages.0.content") == "kept: not the winner"


def test_a_structured_input_stays_in_the_attributes() -> None:
    (span,) = canonical(request_of({"input.value": ["not", "a", "string"]}))
    assert json.loads(span.attributes_json) == {"input.value": ["not", "a", "string"]}


def test_what_ingest_carries_once_the_evaluator_knows_where_to_find() -> None:
    assert set(TABLES.carried) <= set(CARRIED)


@given(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=4))
def test_an_int_value_followed_by_other_fields_is_read_by_the_full_parser(number: int, tail: bytes) -> None:
    value = AnyValue(int_value=number).SerializeToString() + AnyValue(string_value=tail.hex()).SerializeToString()
    kv = KeyValue(key="k", value=AnyValue.FromString(value))
    raw = b"\x0a\x01k\x12" + bytes([len(value)]) + value
    assert key_value(raw) == ("k", any_value(kv.value))
