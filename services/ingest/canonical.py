"""The span path in C: an OTLP request's bytes → each span's CanonicalSpan bytes, priced, in one pass.

`_canonical.c` is the twin of normalise + price_spans + serialise_spans for the common case. This
module hands it, once at import, the conventions' tables (normalise.TABLES: attribute name → rules,
each rule's converter named by its kind when C runs it natively) and CanonicalSpan's field numbers
and types from the generated descriptor. During a request C asks a `RequestContext` for what stays
in Python: a resource's shared fields (encoded once), an attribute it does not map itself (the
reference's `Attributes`), numbered message parts, an exception event's message, a model's prices.

When the accelerator is not built, or a body is unusual in a way C does not read exactly as the
Python path would, `canonical_spans` answers None and the caller runs the Python path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vane.v1.bus_pb2 import CanonicalSpan

from services.common.errors import Invalid
from services.common.logs import get_logger
from services.ingest.conventions import convention
from services.ingest.normalise import TABLES, Attributes, Tables, exception_message, map_resource, numbered_messages
from services.ingest.pricing import PriceTable
from services.ingest.wire import TraceRequestLike, body_of, key_value, parse_request

try:
    from services.ingest import _canonical
except ImportError:  # built without a C compiler: the Python path runs
    _canonical = None  # type: ignore[assignment]

log = get_logger(component="canonical")

# The converters C runs natively, by kind (the rest run in Python, with the decoded value).
_NATIVE: dict[Any, str] = {
    convention.text: "text",
    convention.count: "count",
    convention.amount: "amount",
    convention.version: "version",
    convention.seconds_to_ms: "seconds_to_ms",
    convention.timestamp_ns: "timestamp_ns",
    convention.is_error_level: "is_error_level",
}


def compile_for_c(tables: Tables) -> dict[str, Any]:
    """The Canonicaliser's arguments: every span attribute name with its rules, by kind."""
    assert _canonical is not None
    kinds: dict[str, int] = _canonical.KINDS
    lowered: list[dict[str, str]] = []
    lowered_index: dict[int, int] = {}
    names = []
    for key, rules in tables.span.items():
        compiled = []
        slow = False
        for rank, field, convert, expands in rules:
            table = convert if isinstance(convert, convention.Lowered) else None
            kind = "lowered" if table is not None else _NATIVE.get(convert, "python")
            slow |= expands or kind == "python"
            index = -1
            if table is not None:  # each table once (the converters live as long as `tables`: their ids hold)
                index = lowered_index.setdefault(id(table), len(lowered))
                if index == len(lowered):
                    lowered.append(dict(table.table))
            compiled.append((rank, field, kinds[kind], convert, index))
        names.append((key, slow, key in tables.carried, () if slow else tuple(compiled)))
    by_name = CanonicalSpan.DESCRIPTOR.fields_by_name
    fields = tuple(
        (by_name[name].number, by_name[name].type, by_name[name].has_presence) for name in _canonical.OUTPUT_FIELDS
    )
    return {
        "names": tuple(names),
        "lowered": tuple(lowered),
        "prefixes": tables.prefixes,
        "fields": fields,
        "invalid": Invalid,
    }


def _build(tables: Tables) -> Any:
    if _canonical is None:
        return None
    try:
        return _canonical.Canonicaliser(**compile_for_c(tables))
    except (ValueError, TypeError) as exc:  # tables or descriptor C cannot follow: stay correct, in Python
        log.warning("canonical_accelerator_refused_tables", error=str(exc))
        return None


ACCELERATOR = _build(TABLES)

# What C does not do, so it leaves the request to Python when the body may hold it: a first-token
# span event (C reads only `exception` events), and a span naming its own app version under a
# resource that names none, which Python spreads to the rest of its trace (normalise.spread_trace_versions).
_FIRST_TOKEN_MARKERS = tuple(name.encode() for name in TABLES.first_token_events)
_SPAN_VERSION_MARKERS = tuple(
    key.encode() for key, rules in TABLES.span.items() if any(rule[1] == "app_version" for rule in rules)
)


def needs_python(body: bytes) -> bool:
    """Whether the request may hold what only the Python path does (substring searches, then the
    resources alone when a span may name its app version: under a resource's version it is moot)."""
    if any(marker in body for marker in _FIRST_TOKEN_MARKERS):
        return True
    if not any(marker in body for marker in _SPAN_VERSION_MARKERS):
        return False
    view: Any = parse_request(body)
    return not all(
        "app_version" in map_resource(key_value(raw) for raw in resource_spans.resource.attributes)
        for resource_spans in view.resource_spans
    )


class RequestContext:
    """What the accelerator asks Python during one request."""

    def __init__(self, project_id: str, prices: Sequence[PriceTable], tables: Tables) -> None:
        self.project_id = project_id
        self.prices = prices
        self.tables = tables
        self.attributes = Attributes(tables)  # attributes C hands over, each decoded and mapped once

    def resource(self, raws: list[bytes]) -> tuple[bytes, bool]:
        """A resource's shared CanonicalSpan bytes, and whether it names the app version."""
        fields = map_resource((key_value(raw) for raw in raws), self.tables)
        shared = CanonicalSpan(project_id=self.project_id, **fields).SerializeToString()
        return shared, "app_version" in fields

    def messages(self, parts: list[tuple[int, str, int, str, Any]]) -> list[tuple[str, int, str]]:
        return numbered_messages(parts)

    def exception(self, raws: list[bytes]) -> str:
        return exception_message(raws)

    def price(self, model: str) -> tuple[tuple[int, float, float, float], ...]:
        """The model's prices, newest first, table by table (a project's own before the built-in)."""
        return tuple(
            (
                price.valid_from_ns,
                price.input_per_million,
                price.output_per_million,
                price.input_per_million if price.cached_input_per_million is None else price.cached_input_per_million,
            )
            for table in self.prices
            for price in table.candidates(model)
        )


def accepts(body: bytes) -> bool:
    """Whether the accelerator is built and reads these request bytes exactly as the protobuf parser would."""
    return ACCELERATOR is not None and bool(ACCELERATOR.check(body))


def canonical_spans(request: TraceRequestLike, project_id: str, prices: Sequence[PriceTable]) -> list[bytes] | None:
    """Each span's CanonicalSpan bytes, priced, exactly as the Python path makes them; None when the
    accelerator is not built or leaves the request to the Python path. Raises Invalid as normalise does."""
    if ACCELERATOR is None:
        return None
    body = body_of(request)
    if needs_python(body):
        return None
    spans: list[bytes] | None = ACCELERATOR.spans(body, RequestContext(project_id, prices, TABLES))
    return spans
