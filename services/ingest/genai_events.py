"""GenAI events from OTLP logs: the message content some instrumentations send as log records
instead of span attributes (OpenTelemetry's `opentelemetry-instrumentation-openai-v2` with
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=EVENT_ONLY`), keyed by the span they belong to.

Two shapes are read:
- `gen_ai.client.inference.operation.details`: the whole exchange, in `gen_ai.input.messages` and
  `gen_ai.output.messages` (the same messages a span would carry in its attributes);
- the earlier one event per message: `gen_ai.{system,user,assistant,tool}.message` (body
  `{content}`) and `gen_ai.choice` (body `{index, finish_reason, message: {role, content}}`).

Pure functions over plain data: a piece is (time, field, whole, value); `assemble` makes a span's
canonical input and output from its pieces, in time order, whichever requests they came in.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from services.common.errors import Invalid
from services.ingest.decode import JSON_TYPES, PROTOBUF_TYPES, media_type
from services.ingest.wire import any_value

DETAILS = "gen_ai.client.inference.operation.details"
_MESSAGE_EVENTS = {f"gen_ai.{role}.message": role for role in ("system", "user", "assistant", "tool")}
_CHOICE = "gen_ai.choice"
_WHOLE = {"gen_ai.input.messages": "input", "gen_ai.output.messages": "output"}
SpanKey = tuple[bytes, bytes]  # (trace_id, span_id)
Piece = tuple[int, str, bool, Any]  # (time, "input" | "output", the whole field or one message, value)


def decode_logs(body: bytes, content_type: str | None) -> ExportLogsServiceRequest:
    """An OTLP logs export body (protobuf, or JSON with hex ids); Invalid says what is wrong."""
    if not body:
        raise Invalid("the request body is empty: send an OTLP ExportLogsServiceRequest")
    request = ExportLogsServiceRequest()
    kind = media_type(content_type)
    if kind in PROTOBUF_TYPES:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise Invalid(f"the body is not a valid OTLP protobuf ExportLogsServiceRequest: {exc}") from None
        return request
    if kind not in JSON_TYPES:
        raise Invalid(f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json")
    try:
        document = msgspec.json.decode(body)
        for resource_logs in document.get("resourceLogs") or []:
            for scope_logs in resource_logs.get("scopeLogs") or []:
                for record in scope_logs.get("logRecords") or []:
                    for name in ("traceId", "spanId"):
                        if record.get(name):
                            record[name] = base64.b64encode(bytes.fromhex(record[name])).decode()
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (msgspec.DecodeError, json_format.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise Invalid(f"the JSON body is not an OTLP ExportLogsServiceRequest: {exc}") from None
    return request


def pieces(request: ExportLogsServiceRequest) -> dict[SpanKey, list[Piece]]:
    """The GenAI content of every log record that belongs to a span, by span; other records are left."""
    found: dict[SpanKey, list[Piece]] = {}
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if len(record.trace_id) != 16 or len(record.span_id) != 8:
                    continue
                got = record_pieces(record)
                if got:
                    found.setdefault((record.trace_id, record.span_id), []).extend(got)
    return found


def record_pieces(record: LogRecord) -> list[Piece]:
    attributes = {kv.key: any_value(kv.value) for kv in record.attributes}
    name = record.event_name or str(attributes.get("event.name") or "")
    at = record.time_unix_nano or record.observed_time_unix_nano
    if name == DETAILS:
        return [(at, field, True, _messages(attributes[key])) for key, field in _WHOLE.items() if key in attributes]
    body = any_value(record.body) if record.HasField("body") else None
    if name in _MESSAGE_EVENTS and isinstance(body, Mapping):
        return [(at, "input", False, {"role": _MESSAGE_EVENTS[name], **body})]
    if name == _CHOICE and isinstance(body, Mapping) and isinstance(body.get("message"), Mapping):
        return [(at, "output", False, {"role": "assistant", **body["message"]})]
    return []


def _messages(value: Any) -> Any:
    """GenAI messages as sent: a JSON string, or structured log attribute values."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def assemble(found: Iterable[Piece]) -> dict[str, str]:
    """A span's canonical input and output (JSON lists of messages) from its pieces: the latest
    whole field wins; else its single messages, in time order."""
    whole: dict[str, tuple[int, Any]] = {}
    parts: dict[str, list[tuple[int, Any]]] = {}
    for at, field, is_whole, value in found:
        if is_whole:
            if field not in whole or at >= whole[field][0]:
                whole[field] = (at, value)
        else:
            parts.setdefault(field, []).append((at, value))
    out: dict[str, str] = {}
    for field in ("input", "output"):
        if field in whole:
            value = whole[field][1]
        elif field in parts:
            value = [message for _, message in sorted(parts[field], key=lambda p: p[0])]
        else:
            continue
        out[field] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return out
