"""The span path in C (services/ingest/_canonical.c) against its Python reference: on every request
both give the same CanonicalSpan messages or the same error, and no bytes make the C path crash."""

from __future__ import annotations

import json
import math
import os
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode
from vane.v1.bus_pb2 import CanonicalSpan

from services.common.errors import Invalid
from services.ingest import canonical
from services.ingest.canonical import ACCELERATOR, RequestContext
from services.ingest.decode import decode_protobuf
from services.ingest.normalise import TABLES, normalise
from services.ingest.pricing import BUILTIN, ModelPrice, PriceTable, price_spans
from services.ingest.publish import serialise_spans
from services.ingest.wire import TraceRequest, WireRequest, parse_request
from tests.bench.bench_ingest import unique_bodies
from tests.support.otlp_values import any_value_of

PROJECT = "8d6f1c9e-6a55-4f7e-9d2b-3f1f4f3f0a11"
OWN_PRICES = PriceTable(
    [
        ModelPrice("gpt-4o", "gpt-4o.*", 2.5, 10.0, None, 0, "project"),
        ModelPrice("gpt-4o", "gpt-4o.*", 3.0, 12.0, 1.5, 1_700_000_000_000_000_000, "project"),
        ModelPrice("future", "future-model", 1.0, 1.0, 0.5, 4_000_000_000_000_000_000, "project"),
    ]
)
PRICES = (OWN_PRICES, BUILTIN)

# Only the first test runs without the accelerator: it fails then, as it should.
needs_accelerator = pytest.mark.skipif(ACCELERATOR is None, reason="the accelerator is not built")


def test_the_accelerator_is_built_where_the_tests_run() -> None:
    # CI's machine has gcc: the benchmarks and these tests must never silently measure the Python path.
    assert canonical._canonical is not None, "services/ingest/_canonical.c did not build: pip install -e ."
    assert ACCELERATOR is not None, "the accelerator refused the conventions' tables (see the start-up log)"


@needs_accelerator
def test_the_kind_lookups_of_genai_and_langfuse_run_in_c() -> None:
    # A `lowered` converter C did not recognise would still give the same records, through Python:
    # only the kinds say whether the common attributes take the fast path.
    names = {name: rules for name, slow, _, rules in canonical.compile_for_c(TABLES)["names"] if not slow}
    kinds = canonical._canonical.KINDS  # type: ignore[union-attr]
    for name in ("gen_ai.operation.name", "langfuse.observation.type", "gen_ai.request.model"):
        assert name in names, f"{name} is left to Python"
    assert [rule[2] for rule in names["gen_ai.operation.name"]] == [kinds["lowered"]]


def reference(body: bytes) -> list[bytes]:
    """The Python path: parse, normalise, price, encode."""
    groups = normalise(parse_request(body), PROJECT)
    for group in groups:
        price_spans(group.spans, PRICES)
    return list(serialise_spans(groups))


def accelerated(body: bytes) -> list[bytes] | None:
    assert ACCELERATOR is not None
    return ACCELERATOR.spans(body, RequestContext(PROJECT, PRICES, TABLES))


def readable(record: bytes) -> dict[str, Any]:
    """A CanonicalSpan as comparable data: attributes_json parsed, NaN made comparable."""
    span = CanonicalSpan.FromString(record)
    fields: dict[str, Any] = {f.name: v for f, v in span.ListFields()}
    fields["attributes_json"] = json.loads(span.attributes_json)
    return {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in fields.items()}


def outcome(run: Callable[[], list[bytes] | None]) -> tuple[str, Any]:
    try:
        records = run()
    except Invalid as exc:
        return "invalid", exc.message
    except (ValueError, TypeError, OverflowError) as exc:
        return "error", type(exc).__name__
    return ("records", [readable(r) for r in records]) if records is not None else ("python", None)


def assert_same(body: bytes) -> str:
    """Both paths agree on the body; returns what the C path did."""
    mine = outcome(lambda: accelerated(body))
    if mine[0] == "python":  # C left it to the reference: nothing to compare
        return "python"
    assert mine == outcome(lambda: reference(body))
    return mine[0]


# ------------------------------------------------------------------ generated requests

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "chat", "CHAT", "Generation", "LLM", "error", "ERROR", "v3", "V12", "0", "00", " 7 "]),
    st.sampled_from(["812", "-4", "1.5", "1e3", "inf", "nan", "²", "٣", "gpt-4o", "gpt-4o-2024-08-06", "future-model"]),
    st.sampled_from(["2024-05-01T10:00:00.25Z", '"2024-05-01T10:00:00Z"', "2024-05-01", "not a date"]),
    st.sampled_from(
        ['{"input": 812, "output": 96, "total": 908}', '{"input": 0.002, "output": "0.001"}', "{bad", "[]"]
    ),
)
scalars = st.one_of(
    texts,
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 5000),
    st.booleans(),
    st.binary(max_size=6),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
NUMBERED = [
    f"{prefix}{i}{suffix}"
    for prefix, suffix in (
        ("gen_ai.prompt.", ".content"),
        ("gen_ai.completion.", ".role"),
        ("llm.input_messages.", ".message.content"),
    )
    for i in (0, 1, 10)
] + ["gen_ai.prompt.1.role", "gen_ai.prompt.x.content"]
names = st.one_of(
    st.sampled_from(sorted(TABLES.span)),
    st.sampled_from(NUMBERED),
    st.text(max_size=12),
    st.sampled_from(["custom", "gen_ai.system"]),
)


def unusual(key: str, value: Any) -> list[bytes]:
    """The same attribute written in ways the usual reading does not expect, and broken ones."""
    name = KeyValue(key=key).SerializeToString()
    field = KeyValue(value=any_value_of(value)).SerializeToString()
    return [
        field + name,  # value first
        name + field + KeyValue(value=AnyValue(string_value="last")).SerializeToString(),  # value twice
        name,  # no value
        name + b"\x12\x04\x0a\x02\xff\xfe",  # a value that is not UTF-8
        b"\x0a\x02\xc3\x28" + field,  # a name that is not UTF-8
        name + b"\x12\x03\x18\xff\xff",  # a truncated value
        name + b"\x12\x0b\x18" + b"\xff" * 9 + b"\x7f",  # an int beyond 64 bits
    ]


@st.composite
def attributes(draw: st.DrawFn, max_size: int = 8) -> list[bytes]:
    raws = []
    for key, value in draw(st.lists(st.tuples(names, values), max_size=max_size)):
        if draw(st.integers(0, 60)) == 0:
            raws.append(draw(st.sampled_from(unusual(key, value))))
        else:
            raws.append(KeyValue(key=key, value=any_value_of(value)).SerializeToString())
    return raws


ids = st.one_of(st.just(b""), st.binary(min_size=16, max_size=16), st.just(bytes(16)), st.binary(max_size=9))
SECOND = 1_000_000_000
times = st.one_of(st.integers(1_700_000_000 * SECOND, 1_700_000_100 * SECOND), st.just(0), st.integers(0, 2**64 - 1))


@st.composite
def spans(draw: st.DrawFn, scope: Any) -> None:
    span = scope.spans.add()
    broken = draw(st.integers(0, 99)) == 0  # most requests are valid: then C must give the same spans
    span.trace_id = draw(ids) if broken else os.urandom(16)
    span.span_id = draw(st.binary(max_size=9)) if broken else os.urandom(8)
    span.parent_span_id = draw(st.sampled_from([b"", os.urandom(8), b"\x01"] if broken else [b"", os.urandom(8)]))
    span.name = draw(st.text(max_size=12))
    start = draw(times) if broken else draw(st.integers(1_700_000_000 * SECOND, 1_700_000_100 * SECOND))
    span.start_time_unix_nano = start
    span.end_time_unix_nano = max(0, min(2**64 - 1, start + draw(st.integers(-SECOND if broken else 0, 3 * SECOND))))
    span.attributes.extend(draw(attributes()))
    if draw(st.booleans()):
        span.status.code = draw(st.sampled_from([0, 1, 2]))
        span.status.message = draw(st.sampled_from(["", "boom"]))
    for _ in range(draw(st.integers(0, 2))):
        event = span.events.add(name=draw(st.sampled_from(["exception", "log"])))
        event.attributes.extend(draw(attributes(3)))
        if draw(st.booleans()):
            event.attributes.append(
                KeyValue(key="exception.message", value=AnyValue(string_value="bad")).SerializeToString()
            )


RESOURCE_KEYS = [
    "service.name",
    "service.version",
    "project_name",
    "project_version_name",
    "project_type",
    "eval_tags",
    "metadata",
    "host",
]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    request = TraceRequest()
    for _ in range(draw(st.integers(1, 3))):
        resource_spans = request.resource_spans.add()
        for key in draw(st.lists(st.sampled_from(RESOURCE_KEYS), max_size=4)):
            value = draw(st.one_of(texts, st.sampled_from(["experiment", "OBSERVE", "1.2.0"]), st.integers(0, 9)))
            resource_spans.resource.attributes.append(KeyValue(key=key, value=any_value_of(value)).SerializeToString())
        for _ in range(draw(st.integers(1, 2))):
            scope = resource_spans.scope_spans.add()
            for _ in range(draw(st.integers(0, 3))):
                draw(spans(scope))
    body: bytes = request.SerializeToString()
    return body


@needs_accelerator
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(requests())
def test_generated_requests_give_the_same_canonical_spans_or_the_same_error(body: bytes) -> None:
    assert ACCELERATOR is not None and ACCELERATOR.check(body)
    assert_same(body)


@needs_accelerator
def test_the_common_request_is_read_in_c_and_equals_the_reference() -> None:
    (body,) = unique_bodies(1)
    assert assert_same(body) == "records"
    records = accelerated(body)
    assert records is not None and len(records) == 512
    assert records[0] == reference(body)[0] or readable(records[0]) == readable(reference(body)[0])


@needs_accelerator
def test_every_convention_is_read_in_c() -> None:
    spans_of: dict[str, Any] = {
        "langfuse": {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "gpt-4o",
            "langfuse.observation.usage_details": '{"input": 812, "output": 96, "input_cached_tokens": 512}',
            "langfuse.observation.completion_start_time": "2023-11-14T22:13:20.5Z",
            "langfuse.observation.level": "ERROR",
            "langfuse.observation.status_message": "rate limited",
            "langfuse.observation.prompt.version": "v3",
            "langfuse.observation.input": "hi",
        },
        "openinference": {
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-3-5-sonnet-20241022",
            "llm.token_count.prompt": 1200,
            "llm.cost.prompt": 0.01,
            "llm.cost.completion": 0.02,
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "Summarise",
            "output.value": "A summary.",
        },
        "traceloop": {
            "traceloop.span.kind": "workflow",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "hello",
            "gen_ai.completion.0.content": "hi",
            "gen_ai.usage.prompt_tokens": "40",
            "gen_ai.request.model": "gpt-4o-mini",
        },
        "traceai": {
            "gen_ai.span.kind": "AGENT",
            "gen_ai.prompt.template.version": 4,
            "gen_ai.server.time_to_first_token": 120.5,
            "gen_ai.cost.total": 0.25,
            "error.message": "x",
        },
    }
    for attributes in spans_of.values():
        request = TraceRequest()
        span = (
            request.resource_spans.add()
            .scope_spans.add()
            .spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="call")
        )
        span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000 * SECOND, 1_700_000_001 * SECOND
        span.attributes.extend(
            KeyValue(key=k, value=any_value_of(v)).SerializeToString() for k, v in attributes.items()
        )
        assert assert_same(request.SerializeToString()) == "records"


@needs_accelerator
def test_bad_ids_are_refused_with_the_span_named() -> None:
    request = TraceRequest.FromString(unique_bodies(1)[0])
    request.resource_spans[0].scope_spans[0].spans[3].span_id = bytes(8)
    body = request.SerializeToString()
    with pytest.raises(Invalid, match=r"span 3 \('chat gpt-4o'\): span_id must be 8 bytes"):
        accelerated(body)
    assert assert_same(body) == "invalid"


# ------------------------------------------------------------------ robustness


def small_body() -> bytes:
    request = TraceRequest.FromString(unique_bodies(1)[0])
    spans = request.resource_spans[0].scope_spans[0].spans
    del spans[3:]
    spans[1].status.code, spans[1].status.message = 2, "boom"
    exception = KeyValue(key="exception.type", value=AnyValue(string_value="E"))
    spans[2].events.add(name="exception").attributes.append(exception.SerializeToString())
    return request.SerializeToString()


def check_no_crash(body: bytes) -> None:
    """decode → C path, as the service runs it: only records, None or Invalid; and as the reference says."""
    request = decode_protobuf_or_invalid(body)
    if isinstance(request, WireRequest):
        assert_same(body)


def decode_protobuf_or_invalid(body: bytes) -> Any:
    try:
        return decode_protobuf(body)
    except Invalid:
        return None


@needs_accelerator
def test_every_prefix_of_a_body_is_refused_or_read_like_the_reference() -> None:
    body = small_body()
    for end in range(len(body) + 1):
        check_no_crash(body[:end])


@needs_accelerator
def test_random_byte_flips_are_refused_or_read_like_the_reference() -> None:
    body = small_body()
    rng = random.Random(4)
    for _ in range(3000):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mutated))
            mutated[at] = rng.choice([rng.randrange(256), mutated[at] ^ (1 << rng.randrange(8))])
        check_no_crash(bytes(mutated))


@needs_accelerator
@example(b"\x0a\x05\x12\x03\x12\x01\x00")
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    check_no_crash(body)


@needs_accelerator
def test_unusual_structure_is_left_to_the_parser() -> None:
    group = b"\x0a\x06\x12\x04\x12\x02\x1b\x1c"  # a span holding an (unknown) group
    assert ACCELERATOR is not None and not ACCELERATOR.check(group)
    assert not isinstance(decode_protobuf(group), WireRequest)
    long_double = struct.pack("<d", 1.5)
    assert ACCELERATOR.check(b"\x09" + long_double)  # an unknown fixed64 at the top: skipped as upb does


@needs_accelerator
def test_what_the_opentelemetry_sdk_sends_is_read_in_c() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bot", "project_version_name": "v2"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test", "1.0")
    with tracer.start_as_current_span("workflow", attributes={"traceloop.span.kind": "workflow"}) as parent:
        parent.add_event("log", {"level": "info"})
        attributes = {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 812,
            "gen_ai.usage.output_tokens": 96,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.stop_sequences": ["\n", "END"],
            "llm.is_streaming": True,
            "gen_ai.prompt.0.content": "hi",
            "gen_ai.prompt.0.role": "user",
        }
        with tracer.start_as_current_span(
            "chat", attributes=attributes, links=[Link(parent.get_span_context())]
        ) as child:
            child.record_exception(RuntimeError("rate limited"))
            child.set_status(Status(StatusCode.ERROR))
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    assert isinstance(decode_protobuf(body), WireRequest)
    assert assert_same(body) == "records"
    error = CanonicalSpan.FromString(accelerated(body)[0])  # type: ignore[index]
    assert (error.status, error.error_message, error.cost > 0) == (2, "rate limited", True)
