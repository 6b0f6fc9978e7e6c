"""Normalise: every span of an OTLP request, whatever its convention, into one CanonicalSpan.

The conventions' tables are compiled once into one lookup from attribute name to canonical field
with its precedence, so a span costs one dictionary lookup per attribute, not one branch per
convention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from vane.v1.bus_pb2 import CanonicalSpan, SpanStatus

from services.common.errors import Invalid
from services.ingest.conventions import REGISTRY
from services.ingest.conventions.convention import Convention, Converter, Expander, Indexed

Rule = tuple[int, str, Converter]  # (precedence: lower wins, canonical field, converter)
_json = msgspec.json.Encoder()
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


@dataclass(frozen=True)
class Tables:
    span: Mapping[str, tuple[Rule, ...]]
    expand: Mapping[str, tuple[int, Expander]]
    resource: Mapping[str, tuple[Rule, ...]]
    indexed: tuple[tuple[int, Indexed], ...]
    prefixes: tuple[str, ...]


def compile_tables(registry: Sequence[Convention]) -> Tables:
    """One lookup for all conventions; precedence = (convention's place, row's place in its table)."""
    span: dict[str, list[Rule]] = {}
    resource: dict[str, list[Rule]] = {}
    expand: dict[str, tuple[int, Expander]] = {}
    indexed: list[tuple[int, Indexed]] = []
    for rank, convention in enumerate(registry):
        for row, (key, (field, convert)) in enumerate(convention.span.items()):
            span.setdefault(key, []).append((rank * 1000 + row, field, convert))
        for row, (key, (field, convert)) in enumerate(convention.resource.items()):
            resource.setdefault(key, []).append((rank * 1000 + row, field, convert))
        for row, (key, expander) in enumerate(convention.expand.items()):
            expand.setdefault(key, (rank * 1000 + row, expander))
        indexed.extend((rank * 1000 + 999, rule) for rule in convention.indexed)
    return Tables(
        span={k: tuple(v) for k, v in span.items()},
        expand=expand,
        resource={k: tuple(v) for k, v in resource.items()},
        indexed=tuple(indexed),
        prefixes=tuple(rule.prefix for _, rule in indexed),
    )


TABLES = compile_tables(REGISTRY)


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
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def map_attributes(attrs: Mapping[str, Any], tables: Tables = TABLES) -> dict[str, Any]:
    """Canonical fields found in a span's attributes, each from its highest-precedence source."""
    found: dict[str, tuple[int, Any]] = {}
    messages: dict[str, tuple[int, dict[int, dict[str, Any]]]] = {}
    for key, raw in attrs.items():
        rules = tables.span.get(key)
        if rules is not None:
            for rank, field, convert in rules:
                value = convert(raw)
                if value is not None and (field not in found or rank < found[field][0]):
                    found[field] = (rank, value)
        expander = tables.expand.get(key)
        if expander is not None:
            for field, value in (expander[1](raw) or {}).items():
                if field not in found or expander[0] < found[field][0]:
                    found[field] = (expander[0], value)
        if rules is None and expander is None and key.startswith(tables.prefixes):
            _collect_message(key, raw, tables, messages)
    for field, (rank, by_index) in messages.items():
        if field not in found:
            listed = [by_index[i] for i in sorted(by_index)]
            found[field] = (rank, _json.encode(listed).decode())
    return {field: value for field, (_, value) in found.items()}


def _collect_message(
    key: str, raw: Any, tables: Tables, messages: dict[str, tuple[int, dict[int, dict[str, Any]]]]
) -> None:
    for rank, rule in tables.indexed:
        match = rule.pattern.match(key)
        if match is not None:
            _, by_index = messages.setdefault(rule.field, (rank, {}))
            by_index.setdefault(int(match.group(1)), {})[match.group(2)] = raw
            return


def map_resource(attrs: Mapping[str, Any], tables: Tables = TABLES) -> dict[str, Any]:
    found: dict[str, tuple[int, Any]] = {}
    for key, raw in attrs.items():
        for rank, field, convert in tables.resource.get(key, ()):
            value = convert(raw)
            if value is not None and (field not in found or rank < found[field][0]):
                found[field] = (rank, value)
    return {field: value for field, (_, value) in found.items()}


def normalise(request: ExportTraceServiceRequest, project_id: str, tables: Tables = TABLES) -> list[CanonicalSpan]:
    """Every span of the request as a CanonicalSpan; Invalid names the first span with bad ids or times."""
    out: list[CanonicalSpan] = []
    for resource_spans in request.resource_spans:
        resource = map_resource(attributes(resource_spans.resource.attributes), tables)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                check_span(span, len(out))
                out.append(canonical_span(span, resource, project_id, tables))
    return out


def check_span(span: Span, index: int) -> None:
    if len(span.trace_id) != 16 or span.trace_id == _ZERO_TRACE:
        raise Invalid(f"span {index} ({span.name!r}): trace_id must be 16 bytes, not all zero")
    if len(span.span_id) != 8 or span.span_id == _ZERO_SPAN:
        raise Invalid(f"span {index} ({span.name!r}): span_id must be 8 bytes, not all zero")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        raise Invalid(f"span {index} ({span.name!r}): parent_span_id must be 8 bytes or empty")
    if span.end_time_unix_nano < span.start_time_unix_nano:
        raise Invalid(f"span {index} ({span.name!r}): end_time_unix_nano is before start_time_unix_nano")


def canonical_span(span: Span, resource: Mapping[str, Any], project_id: str, tables: Tables = TABLES) -> CanonicalSpan:
    attrs = attributes(span.attributes)
    f = map_attributes(attrs, tables)
    start = span.start_time_unix_nano
    ttft = f.get("ttft_ms")
    completion_start = f.get("completion_start_ns")
    # A first token outside the span's own interval is a clock or client error: no TTFT then.
    if ttft is None and completion_start is not None and start <= completion_start <= span.end_time_unix_nano:
        ttft = (completion_start - start) / 1e6
    input_tokens, output_tokens = f.get("input_tokens"), f.get("output_tokens")
    total = f.get("total_tokens")
    if total is None and (input_tokens is not None or output_tokens is not None):
        total = (input_tokens or 0) + (output_tokens or 0)
    cost = f.get("cost")
    if cost is None and ("input_cost" in f or "output_cost" in f):
        cost = f.get("input_cost", 0.0) + f.get("output_cost", 0.0)
    model = f.get("model", "")
    failed = span.status.code == Status.STATUS_CODE_ERROR or f.get("is_error", False)
    return CanonicalSpan(
        project_id=project_id,
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=span.name,
        kind=f.get("kind") or ("llm" if model else "span"),
        project_name=resource.get("project_name", ""),
        app_version=resource.get("app_version") or f.get("app_version", ""),
        project_type=resource.get("project_type", ""),
        prompt_name=f.get("prompt_name", ""),
        prompt_version=f.get("prompt_version", 0),
        prompt_label=f.get("prompt_label", ""),
        model=model,
        start_time_unix_nano=start,
        end_time_unix_nano=span.end_time_unix_nano,
        ttft_ms=ttft,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total,
        cached_input_tokens=f.get("cached_input_tokens"),
        cost=cost,
        status=SpanStatus.SPAN_STATUS_ERROR if failed else SpanStatus.SPAN_STATUS_OK,
        error_message=(span.status.message or f.get("error_message") or _exception_message(span)) if failed else "",
        session_id=f.get("session_id", ""),
        user_id=f.get("user_id", ""),
        input=f.get("input", ""),
        output=f.get("output", ""),
        eval_tags_json=resource.get("eval_tags_json", ""),
        attributes_json=_json.encode(attrs).decode(),
        metadata_json=resource.get("metadata_json", ""),
    )


def _exception_message(span: Span) -> str:
    for event in span.events:
        if event.name == "exception":
            attrs = attributes(event.attributes)
            return str(attrs.get("exception.message") or attrs.get("exception.type") or "")
    return ""
