"""Decoding OTLP bodies: protobuf, JSON with hex ids, gzip, and every bad body refused with its reason."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from services.common.errors import Invalid, TooLarge
from services.ingest.decode import decode_request, decompress
from services.ingest.normalise import normalise

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"


def json_body(trace_id: str = TRACE, span_id: str = SPAN) -> bytes:
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "chat",
        "kind": 3,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}],
    }
    return json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]}).encode()


def test_otlp_json_ids_are_hex() -> None:
    request = decode_request(json_body(), "application/json")
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE and span.span_id.hex() == SPAN
    assert span.end_time_unix_nano - span.start_time_unix_nano == 1_000_000_000


def test_gzip_bodies_are_inflated() -> None:
    body = ExportTraceServiceRequest().SerializeToString() + b""
    assert decompress(gzip.compress(json_body()), "gzip", 1 << 20) == json_body()
    assert decompress(body, None, 10) == body


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"", "application/x-protobuf", "empty"),
        (b"\x0a\xff\xff\xff\x0f\x01", "application/x-protobuf", "not a valid OTLP protobuf"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be an object"),
        (json_body(trace_id="zz"), "application/json", "is not hex"),
        (b"abc", "text/plain", "unsupported Content-Type"),
    ],
)
def test_bad_bodies_are_refused_with_their_reason(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        decode_request(body, content_type)


def test_invalid_utf8_in_a_string_is_refused() -> None:
    # resource_spans(1) > scope_spans(2) > spans(2) > name(5) = b"\xff\xfe"
    span = b"\x2a\x02\xff\xfe"
    scope = b"\x12" + bytes([len(span)]) + span
    resource = b"\x12" + bytes([len(scope)]) + scope
    body = b"\x0a" + bytes([len(resource)]) + resource
    with pytest.raises(Invalid, match="not a valid OTLP protobuf"):
        decode_request(body, "application/x-protobuf")


def test_a_body_that_claims_gzip_and_is_not_is_refused() -> None:
    with pytest.raises(Invalid, match="does not inflate"):
        decompress(b"plain bytes", "gzip", 1 << 20)


def test_a_truncated_gzip_body_is_refused() -> None:
    with pytest.raises(Invalid, match="truncated"):
        decompress(gzip.compress(json_body())[:-12], "gzip", 1 << 20)


def test_a_gzip_bomb_is_refused_as_too_large() -> None:
    with pytest.raises(TooLarge):
        decompress(gzip.compress(bytes(2 << 20)), "gzip", 1 << 20)


def test_bad_ids_are_refused_by_normalise() -> None:
    request = decode_request(json_body(span_id="00000000000000"), "application/json")
    with pytest.raises(Invalid, match="span_id"):
        normalise(request, "p")
    request = decode_request(json_body(trace_id="00" * 16), "application/json")
    with pytest.raises(Invalid, match="trace_id"):
        normalise(request, "p")
