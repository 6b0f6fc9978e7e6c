"""Receive: an OTLP/HTTP body (protobuf or JSON, gzip or not) into an ExportTraceServiceRequest.

Pure functions over bytes: every refusal is an Invalid (400) or TooLarge (413) with the reason,
so a bad body never reaches the bus.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from services.common.errors import Invalid, TooLarge
from services.ingest.canonical import accepts
from services.ingest.wire import TraceRequestLike, WireRequest, parse_request, view_of

PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf", "application/octet-stream"})
JSON_TYPES = frozenset({"application/json"})
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def media_type(content_type: str | None) -> str:
    """The media type without parameters, lower-cased ("application/json; charset=utf-8" → "application/json")."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding (gzip, deflate or none), refusing more than `max_bytes` once inflated."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise Invalid(f"unsupported Content-Encoding {encoding!r}: send gzip, deflate or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # 32: accept a gzip or a zlib header
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise Invalid(f"the body claims Content-Encoding {encoding} but does not inflate: {exc}") from None
    if len(out) > max_bytes:
        raise TooLarge(f"the inflated body is larger than the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise Invalid(f"the {encoding} body is truncated")
    return out


def decode_request(body: bytes, content_type: str | None) -> TraceRequestLike:
    """Parse an OTLP trace export body into ingest's view of it (wire.TraceRequest); raise Invalid
    saying what is wrong with it."""
    kind = media_type(content_type)
    if not body:
        raise Invalid("the request body is empty: send an OTLP ExportTraceServiceRequest")
    if kind in PROTOBUF_TYPES:
        return decode_protobuf(body)
    if kind in JSON_TYPES:
        return decode_json(body)
    raise Invalid(
        f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json",
        details={"content_type": content_type},
    )


def decode_protobuf(body: bytes) -> TraceRequestLike:
    """The body as bytes the accelerator will read, when it reads them as the parser would; else parsed."""
    if accepts(body):
        return WireRequest(body)
    try:
        return parse_request(body)
    except DecodeError as exc:
        raise Invalid(f"the body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}") from None


def decode_json(body: bytes) -> Message:
    """OTLP/JSON: like protobuf's JSON mapping, except that trace and span ids are hex, not base64."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Invalid("the JSON body must be an object with resourceSpans")
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                _hex_ids_to_base64(span)
                for link in _list(span, "links"):
                    _hex_ids_to_base64(link)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise Invalid(f"the JSON body is not an OTLP ExportTraceServiceRequest: {exc}") from None
    return view_of(request)


def _list(parent: Any, *names: str) -> list[Any]:
    if not isinstance(parent, dict):
        raise Invalid("the JSON body's resourceSpans/scopeSpans/spans must hold objects")
    for name in names:
        value = parent.get(name)
        if value is not None:
            if not isinstance(value, list):
                raise Invalid(f"{name} must be a JSON array")
            return value
    return []


def _hex_ids_to_base64(obj: Any) -> None:
    if not isinstance(obj, dict):
        raise Invalid("every span in the JSON body must be an object")
    for name in _ID_FIELDS:
        value = obj.get(name)
        if isinstance(value, str) and value:
            try:
                obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise Invalid(f"{name} {value!r} is not hex (OTLP/JSON encodes ids as hex strings)") from None
