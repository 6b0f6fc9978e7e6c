"""Normalise: every span of an OTLP request, whatever its convention, into canonical fields.

The conventions' tables are compiled once into one lookup from attribute name to the canonical
fields it may fill, with their precedence. Within a request each distinct attribute (its KeyValue
bytes, see wire.py) is decoded and mapped once (`Attributes`), so a repeated attribute costs one
dictionary lookup and a span's mapping is a merge of what its attributes give, by precedence.
The result is plain data, grouped by resource: the fields the resource's spans share are kept once
(`SpanGroup.shared`) and each span holds only its own, as keyword arguments of `CanonicalSpan`;
publish.py encodes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from services.common.errors import Invalid
from services.ingest.conventions import REGISTRY
from services.ingest.conventions.convention import Convention, Converter, Indexed
from services.ingest.wire import TraceRequestLike, key_value, split_key_value, text_of, value_at, view_of

# (precedence: lower wins, canonical field, converter, expands: the converter returns several fields)
Rule = tuple[int, str, Converter, bool]
# What an attribute gives a canonical field: (precedence, field, value, attribute name,
# its JSON member when attributes_json leaves it out for carrying it as the input or output)
Contribution = tuple[int, str, Any, str, str]
Found = dict[str, Contribution]
# (name, value, contributions, JSON member, a numbered message part: (precedence, field, index, role|content, value))
Attribute = tuple[str, Any, tuple[Contribution, ...], str, tuple[int, str, int, str, Any] | None]
# Fields the conventions fill only to derive canonical ones; CanonicalSpan has none of them.
_INTERNAL = frozenset({"completion_start_ns", "is_error", "error_message"})
_UNSHARED = (list, dict)  # values no two spans may share
_ATTRIBUTES_KEPT = 65_536  # distinct attributes remembered per request; more are decoded each time
_json = msgspec.json.Encoder()
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
SPAN_OK, SPAN_ERROR = 1, 2  # vane.v1.SpanStatus


@dataclass(frozen=True)
class Tables:
    span: Mapping[str, tuple[Rule, ...]]
    resource: Mapping[str, tuple[Rule, ...]]
    indexed: tuple[tuple[int, Indexed], ...]
    prefixes: tuple[str, ...]
    carried: frozenset[str]  # attributes whose text becomes the canonical input or output
    first_token_events: frozenset[str] = frozenset()  # span events that mark the first streamed token


@dataclass(frozen=True)
class SpanGroup:
    """The spans of one OTLP resource: the CanonicalSpan fields they share, and each span's own."""

    shared: dict[str, Any]
    spans: list[dict[str, Any]]


def compile_tables(registry: Sequence[Convention]) -> Tables:
    """One lookup for all conventions; precedence = (convention's place, row's place in its table)."""
    span: dict[str, list[Rule]] = {}
    resource: dict[str, list[Rule]] = {}
    indexed: list[tuple[int, Indexed]] = []
    for rank, convention in enumerate(registry):
        for row, (key, (field, convert)) in enumerate(convention.span.items()):
            span.setdefault(key, []).append((rank * 1000 + row, field, convert, False))
        for row, (key, (field, convert)) in enumerate(convention.resource.items()):
            resource.setdefault(key, []).append((rank * 1000 + row, field, convert, False))
        for row, (key, expander) in enumerate(convention.expand.items()):
            span.setdefault(key, []).append((rank * 1000 + 500 + row, "", expander, True))
        indexed.extend((rank * 1000 + 999, rule) for rule in convention.indexed)
    first_token_events = frozenset(name for convention in registry for name in convention.first_token_events)
    carried = frozenset(k for k, rules in span.items() if any(r[1] in ("input", "output") for r in rules))
    return Tables(
        span={k: _useful(v) for k, v in span.items()},
        resource={k: tuple(v) for k, v in resource.items()},
        indexed=tuple(indexed),
        prefixes=tuple(rule.prefix for _, rule in indexed),
        carried=carried,
        first_token_events=first_token_events,
    )


def _useful(rules: list[Rule]) -> tuple[Rule, ...]:
    """A name's rules by precedence, less those that repeat an earlier one (same field, same
    converter): given the same value they can never win."""
    kept: list[Rule] = []
    for rule in sorted(rules, key=lambda r: r[0]):
        if not any(k[1] == rule[1] and k[2] is rule[2] and not rule[3] for k in kept):
            kept.append(rule)
    return tuple(kept)


TABLES = compile_tables(REGISTRY)


@dataclass(frozen=True)
class Name:
    """What an attribute's name alone decides: its rules, its JSON member's start, whether it can be carried."""

    key: str
    rules: tuple[Rule, ...]
    member: str  # '"name":'
    carried: bool
    numbered: bool
    single: Rule | None  # the one plain rule, when that is all there is (the usual case)


def name_of(key: str, tables: Tables = TABLES) -> Name:
    rules = tables.span.get(key, ())
    return Name(
        key=key,
        rules=rules,
        member=_json.encode(key).decode() + ":",
        carried=key in tables.carried,
        numbered=key not in tables.span and key.startswith(tables.prefixes),
        single=rules[0] if len(rules) == 1 and not rules[0][3] else None,
    )


class Attributes(dict[bytes, "Attribute"]):
    """KeyValue bytes → Attribute, decoded and mapped once per distinct attribute of a request.

    Spans of one request repeat most of their attributes (model, operation, prompt, session): a
    repeat costs one C-level dictionary lookup, `attributes[raw]`; a new value of a known name
    reuses what the name decides.
    """

    def __init__(self, tables: Tables) -> None:
        super().__init__()
        self.tables = tables
        self.names: dict[bytes, Name] = {}
        self.numbered = False  # some attribute of the request is a numbered message part

    def __missing__(self, raw: bytes) -> Attribute:
        parts = split_key_value(raw)
        if parts is None:  # an unusual encoding: the full parser decides
            key, value = key_value(raw)
            name = name_of(key, self.tables)
        else:
            name = self.names.get(parts[0]) or self._name(parts[0])
            value = value_at(raw, parts[1])
        attribute = attribute_of(name, value, self.tables)
        if name.numbered:
            self.numbered = True
        if type(value) not in _UNSHARED and len(self) < _ATTRIBUTES_KEPT:
            self[raw] = attribute
        return attribute

    def _name(self, key: bytes) -> Name:
        name = name_of(text_of(key, "an attribute name"), self.tables)
        if len(self.names) < _ATTRIBUTES_KEPT:
            self.names[key] = name
        return name


def attribute_of(name: Name, value: Any, tables: Tables = TABLES) -> Attribute:
    """An attribute with what it gives each canonical field and its JSON member, ready to merge."""
    fragment = name.member + _json.encode(value).decode()
    if not name.rules:
        return name.key, value, (), fragment, _indexed(name.key, value, tables) if name.numbered else None
    # A string that becomes the canonical input or output is left out of attributes_json: it travels once.
    carried = fragment if name.carried and isinstance(value, str) else ""
    if name.single is not None:
        rank, field, convert, _ = name.single
        converted = convert(value)
        if converted is None:
            return name.key, value, (), fragment, None
        return name.key, value, ((rank, field, converted, name.key, carried),), fragment, None
    contributions: list[Contribution] = []
    key = name.key
    for rank, field, convert, expands in name.rules:
        if expands:
            contributions.extend((rank, f, v, key, "") for f, v in (convert(value) or {}).items() if v is not None)
        elif (converted := convert(value)) is not None:
            contributions.append((rank, field, converted, key, carried if field in ("input", "output") else ""))
    indexed = _indexed(key, value, tables) if name.numbered else None
    return key, value, tuple(contributions), fragment, indexed


def _indexed(key: str, value: Any, tables: Tables) -> tuple[int, str, int, str, Any] | None:
    for rank, rule in tables.indexed:
        match = rule.pattern.match(key)
        if match is not None:
            return rank, rule.field, int(match.group(1)), match.group(2), value
    return None


def merge(attributes: Sequence[Attribute], numbered: bool = True) -> tuple[Found, list[str]]:
    """Canonical fields found in a span's attributes, each from its highest-precedence source, and
    the attributes' JSON members. `numbered`: some attribute may be a numbered message part."""
    found: Found = {}
    fragments: list[str] = []
    for attribute in attributes:
        fragments.append(attribute[3])
        for contribution in attribute[2]:
            held = found.get(contribution[1])
            if held is None or contribution[0] <= held[0]:  # equal: the same name sent twice, the last wins
                found[contribution[1]] = contribution
    if numbered:
        _merge_messages(attributes, found)
    return found, fragments


def _merge_messages(attributes: Sequence[Attribute], found: Found) -> None:
    parts = [attribute[4] for attribute in attributes if attribute[4] is not None]
    for field, rank, listed in numbered_messages(parts):
        if field not in found:
            found[field] = (rank, field, listed, "", "")


def numbered_messages(parts: Iterable[tuple[int, str, int, str, Any]]) -> list[tuple[str, int, str]]:
    """Numbered message parts (precedence, field, index, role|content, value) as the fields they
    fill: (field, precedence, JSON list of the messages in index order)."""
    messages: dict[str, tuple[int, dict[int, dict[str, Any]]]] = {}
    for rank, field, index, part, value in parts:
        messages.setdefault(field, (rank, {}))[1].setdefault(index, {})[part] = value
    return [
        (field, rank, _json.encode([by_index[i] for i in sorted(by_index)]).decode())
        for field, (rank, by_index) in messages.items()
    ]


def map_fields(attrs: Mapping[str, Any], tables: Tables = TABLES) -> Found:
    """Canonical fields found in a span's attributes (name → plain value)."""
    return merge([attribute_of(name_of(key, tables), value, tables) for key, value in attrs.items()])[0]


def map_attributes(attrs: Mapping[str, Any], tables: Tables = TABLES) -> dict[str, Any]:
    """Canonical fields found in a span's attributes (field → value)."""
    return {field: held[2] for field, held in map_fields(attrs, tables).items()}


def map_resource(attrs: Iterable[tuple[str, Any]], tables: Tables = TABLES) -> dict[str, Any]:
    found: dict[str, tuple[int, Any]] = {}
    for key, raw in attrs:
        for rank, field, convert, _ in tables.resource.get(key, ()):
            value = convert(raw)
            if value is not None and (field not in found or rank < found[field][0]):
                found[field] = (rank, value)
    return {field: value for field, (_, value) in found.items()}


def normalise(request: TraceRequestLike, project_id: str, tables: Tables = TABLES) -> list[SpanGroup]:
    """Every span of an OTLP trace request as canonical fields, grouped by resource; Invalid names
    the first span with bad ids or times, or an attribute that does not decode."""
    view: Any = view_of(request)
    attributes = Attributes(tables)
    groups: list[SpanGroup] = []
    index = 0
    for resource_spans in view.resource_spans:
        resource = map_resource((key_value(raw) for raw in resource_spans.resource.attributes), tables)
        shared = {"project_id": project_id, **resource}
        records: list[dict[str, Any]] = []
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(canonical_fields(span, index, attributes))
                index += 1
        if "app_version" in resource:  # the resource's version wins over a span's own
            for record in records:
                record.pop("app_version", None)
        else:
            spread_trace_versions(records)
        groups.append(SpanGroup(shared, records))
    return groups


def check_span(span: Any, index: int) -> None:
    if len(span.trace_id) != 16 or span.trace_id == _ZERO_TRACE:
        raise Invalid(f"span {index} ({span.name!r}): trace_id must be 16 bytes, not all zero")
    if len(span.span_id) != 8 or span.span_id == _ZERO_SPAN:
        raise Invalid(f"span {index} ({span.name!r}): span_id must be 8 bytes, not all zero")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        raise Invalid(f"span {index} ({span.name!r}): parent_span_id must be 8 bytes or empty")
    if span.end_time_unix_nano < span.start_time_unix_nano:
        raise Invalid(f"span {index} ({span.name!r}): end_time_unix_nano is before start_time_unix_nano")


def canonical_fields(span: Any, index: int, attributes: Attributes) -> dict[str, Any]:
    """One span's own CanonicalSpan fields (keyword arguments; None leaves a field unset)."""
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        check_span(span, index)
    if (parent and len(parent) != 8) or end < start:
        check_span(span, index)
    found, fragments = merge([attributes[raw] for raw in span.attributes], attributes.numbered)
    record = {field: held[2] for field, held in found.items()}
    for field in ("input", "output"):  # they travel once, in CanonicalSpan.input/output
        held = found.get(field)
        if held is not None and held[4]:
            fragments.remove(held[4])
    internal = derive(record, start, end)
    if "ttft_ms" not in record and attributes.tables.first_token_events:
        first_token = first_token_ns(span, attributes.tables.first_token_events)
        if first_token is not None and start <= first_token <= end:
            record["ttft_ms"] = (first_token - start) / 1e6
    status = span.status
    if status.code == _STATUS_ERROR or internal.get("is_error", False):
        record["status"] = SPAN_ERROR
        record["error_message"] = status.message or internal.get("error_message") or _exception_message(span)
    else:
        record["status"] = SPAN_OK
    record.update(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=span.name,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes_json="{" + ",".join(fragments) + "}",
    )
    return record


def derive(record: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """Complete the canonical fields that follow from others (TTFT, total tokens, cost, kind) and
    take out the ones that only serve to derive them; returns those."""
    internal: dict[str, Any] = {}
    if not _INTERNAL.isdisjoint(record):
        internal = {field: record.pop(field) for field in _INTERNAL.intersection(record)}
        completion_start = internal.get("completion_start_ns")
        # A first token outside the span's own interval is a clock or client error: no TTFT then.
        if "ttft_ms" not in record and completion_start is not None and start <= completion_start <= end:
            record["ttft_ms"] = (completion_start - start) / 1e6
    if "cost" not in record and ("input_cost" in record or "output_cost" in record):
        record["cost"] = record.get("input_cost", 0.0) + record.get("output_cost", 0.0)
    if "total_tokens" not in record and ("input_tokens" in record or "output_tokens" in record):
        record["total_tokens"] = record.get("input_tokens", 0) + record.get("output_tokens", 0)
    if "kind" not in record:
        record["kind"] = "llm" if "model" in record else "span"
    return internal


def first_token_ns(span: Any, names: frozenset[str]) -> int | None:
    """When the span's first-token event (OpenInference's, traceAI's) happened, if it has one."""
    for event in span.events:
        if event.name in names:
            return int(event.time_unix_nano)
    return None


def spread_trace_versions(records: list[dict[str, Any]]) -> None:
    """A trace's app version reaches its spans that name none: Langfuse's `update_trace(version=...)`
    sets it on one span only. The root span's version wins; without the root, the first span's that
    has one. Only the spans of this request are seen (a trace is usually exported in one batch)."""
    versions: dict[bytes, str] = {}
    for record in records:
        version = record.get("app_version")
        if version and (not record["parent_span_id"] or record["trace_id"] not in versions):
            versions[record["trace_id"]] = version
    if versions:
        for record in records:
            if "app_version" not in record and record["trace_id"] in versions:
                record["app_version"] = versions[record["trace_id"]]


def _exception_message(span: Any) -> str:
    for event in span.events:
        if event.name == "exception":
            return exception_message(event.attributes)
    return ""


def exception_message(attributes: Iterable[bytes]) -> str:
    """The message of an exception event, from its attributes' KeyValue bytes."""
    attrs = dict(key_value(raw) for raw in attributes)
    return str(attrs.get("exception.message") or attrs.get("exception.type") or "")


def span_count(groups: Iterable[SpanGroup]) -> int:
    """How many spans the groups hold."""
    return sum(len(group.spans) for group in groups)
