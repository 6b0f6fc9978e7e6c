"""The OTLP trace request as ingest reads it: a wire-compatible view, and attributes from bytes.

The view declares only the fields ingest reads, and declares every `attributes` list (a repeated
KeyValue) as `repeated bytes`: the parser hands each attribute over as the bytes of its KeyValue,
without building two Python message objects per attribute, and the same attribute (same name,
same value) in many spans of a request is the same bytes, so it is decoded and mapped once
(normalise.Attributes). Fields the view does not declare (kind, links, flags…) are kept as
unknown fields and never read.

`key_value` reads the usual one-field encodings directly and hands anything else to the full parser.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from services.common.errors import Invalid

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "vane.ingest.otlpview"
_DOUBLE = struct.Struct("<d")


def _field(name: str, number: int, kind: _F.Type.ValueType, message: str = "", repeated: bool = False) -> _F:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    field = _F(name=name, number=number, type=kind, label=label)
    if message:
        field.type_name = f".{_PACKAGE}.{message}"
    return field


def _message(name: str, fields: list[_F], with_attributes: int = 0) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name, field=fields)
    if with_attributes:  # repeated KeyValue, each as its bytes
        message.field.append(_field("attributes", with_attributes, _F.TYPE_BYTES, repeated=True))
    return message


def _file() -> descriptor_pb2.FileDescriptorProto:
    """opentelemetry/proto/trace/v1/trace.proto and its request, as far as ingest reads them."""
    b, s, msg = _F.TYPE_BYTES, _F.TYPE_STRING, _F.TYPE_MESSAGE
    messages = [
        _message("Status", [_field("message", 2, s), _field("code", 3, _F.TYPE_INT32)]),
        _message("Event", [_field("time_unix_nano", 1, _F.TYPE_FIXED64), _field("name", 2, s)], with_attributes=3),
        _message(
            "Span",
            [
                _field("trace_id", 1, b),
                _field("span_id", 2, b),
                _field("parent_span_id", 4, b),
                _field("name", 5, s),
                _field("start_time_unix_nano", 7, _F.TYPE_FIXED64),
                _field("end_time_unix_nano", 8, _F.TYPE_FIXED64),
                _field("events", 11, msg, "Event", repeated=True),
                _field("status", 15, msg, "Status"),
            ],
            with_attributes=9,
        ),
        _message("ScopeSpans", [_field("spans", 2, msg, "Span", repeated=True)]),
        _message("Resource", [], with_attributes=1),
        _message(
            "ResourceSpans",
            [_field("resource", 1, msg, "Resource"), _field("scope_spans", 2, msg, "ScopeSpans", repeated=True)],
        ),
        _message("TraceRequest", [_field("resource_spans", 1, msg, "ResourceSpans", repeated=True)]),
    ]
    return descriptor_pb2.FileDescriptorProto(
        name="vane/ingest/otlp_view.proto", package=_PACKAGE, syntax="proto3", message_type=messages
    )


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
TraceRequest: type[Message] = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.TraceRequest"))


@dataclass(frozen=True)
class WireRequest:
    """An OTLP trace request kept as its bytes, which the C accelerator has checked it reads exactly
    as the protobuf parser would (canonical.py); the Python path parses them when it needs to."""

    body: bytes


# What decode hands the span path: the view, or the bytes the accelerator will read itself.
TraceRequestLike = Message | WireRequest


def parse_request(body: bytes) -> Message:
    """An ExportTraceServiceRequest's bytes as a TraceRequest view; DecodeError when they are not one."""
    request = TraceRequest()
    request.ParseFromString(body)
    return request


def view_of(request: TraceRequestLike) -> Message:
    """The TraceRequest view of any OTLP trace request message (the view itself is returned as is)."""
    if isinstance(request, TraceRequest):
        return request
    if isinstance(request, WireRequest):
        return parse_request(request.body)
    return parse_request(request.SerializeToString())


def body_of(request: TraceRequestLike) -> bytes:
    """The request's protobuf bytes."""
    return request.body if isinstance(request, WireRequest) else request.SerializeToString()


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as plain Python (arrays → lists, key-value lists → dicts)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None


def _varint(raw: bytes, at: int) -> tuple[int, int]:
    """The varint at `at` and the index after it (at most 10 bytes, as protobuf allows)."""
    if len(raw) > at + 1 and raw[at] >= 0x80 and raw[at + 1] < 0x80:  # two bytes: up to 16 KiB, most counts
        return (raw[at] & 0x7F) | (raw[at + 1] << 7), at + 2
    result = shift = 0
    for index in range(at, min(at + 10, len(raw))):
        byte = raw[index]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, index + 1
        shift += 7
    return -1, len(raw) + 1  # truncated: the caller's length check fails and the full parser answers


def text_of(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise Invalid(f"the body is not a valid OTLP protobuf: {what} is not UTF-8") from None


def decode_value(raw: bytes) -> Any:
    """An AnyValue's bytes as plain Python; Invalid when they are not an AnyValue or not UTF-8."""
    return value_at(raw, 0) if raw else None


def value_at(raw: bytes, at: int) -> Any:
    """The AnyValue that fills `raw` from `at` to its end, as plain Python: the usual one-field
    encodings read here, anything else by the full parser."""
    tag = raw[at]
    if tag == 0x0A and len(raw) > at + 1:  # string_value: the common case
        size, start = raw[at + 1], at + 2
        if size >= 0x80:
            size, start = _varint(raw, at + 1)
        if start + size == len(raw):
            return text_of(raw[start:], "an attribute value")
    elif tag == 0x18:  # int_value, two's complement
        if len(raw) == at + 2 and raw[at + 1] < 0x80:
            return raw[at + 1]
        number, end = _varint(raw, at + 1)
        if end == len(raw):
            return number - (1 << 64) if number >= 1 << 63 else number
    elif tag == 0x21 and len(raw) == at + 9:  # double_value
        return _DOUBLE.unpack_from(raw, at + 1)[0]
    elif tag == 0x10 and len(raw) == at + 2 and raw[at + 1] < 0x80:  # bool_value
        return raw[at + 1] != 0
    try:
        return any_value(AnyValue.FromString(raw[at:]))
    except DecodeError as exc:
        raise Invalid(f"the body is not a valid OTLP protobuf: an attribute value does not parse: {exc}") from None


def split_key_value(raw: bytes) -> tuple[bytes, int] | None:
    """A KeyValue's bytes as (name bytes, where its AnyValue starts) when written the usual way
    (the key, then a non-empty value, once each), else None."""
    try:
        if raw[0] != 0x0A:
            return None
        size, start = raw[1], 2
        if size >= 0x80:
            size, start = _varint(raw, 1)
        after = start + size
        if raw[after] != 0x12:
            return None
        value_size, value_start = raw[after + 1], after + 2
        if value_size >= 0x80:
            value_size, value_start = _varint(raw, after + 1)
    except IndexError:
        return None
    if value_size == 0 or value_start + value_size != len(raw):
        return None
    return raw[start:after], value_start


def key_value(raw: bytes) -> tuple[str, Any]:
    """A KeyValue's bytes as (name, plain Python value); Invalid when they are not a KeyValue."""
    parts = split_key_value(raw)
    if parts is not None:
        return text_of(parts[0], "an attribute name"), value_at(raw, parts[1])
    try:
        kv = KeyValue.FromString(raw)
    except DecodeError as exc:
        raise Invalid(f"the body is not a valid OTLP protobuf: an attribute does not parse: {exc}") from None
    return kv.key, any_value(kv.value) if kv.HasField("value") else None
