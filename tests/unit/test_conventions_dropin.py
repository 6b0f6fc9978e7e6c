"""What instrumentors send beyond attributes: first-token span events, a model inside request
parameters, Langfuse's release and a trace's version; the C path leaves these to Python and the
records are the same either way (spans built with the real OpenTelemetry SDK and OTLP encoder)."""

from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from vane.v1.bus_pb2 import CanonicalSpan

from services.ingest.canonical import ACCELERATOR, canonical_spans, needs_python
from services.ingest.decode import decode_protobuf
from services.ingest.intake import canonical_records, priced_records
from services.ingest.normalise import normalise
from services.ingest.pricing import BUILTIN

PROJECT = "8d6f1c9e-6a55-4f7e-9d2b-3f1f4f3f0a11"
SECOND = 1_000_000_000


def _body(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def _records(body: bytes) -> list[CanonicalSpan]:
    return [CanonicalSpan.FromString(r) for r in canonical_records(decode_protobuf(body), PROJECT, (BUILTIN,))]


def _provider(resource: dict[str, Any] | None = None) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _streamed(attributes: dict[str, Any], event: str = "First Token Stream Event") -> bytes:
    provider, memory = _provider()
    start = time.time_ns() - 5 * SECOND
    span = provider.get_tracer("t").start_span("ChatCompletion", attributes=attributes, start_time=start)
    span.add_event(event, timestamp=start + 250_000_000)
    span.end(end_time=start + SECOND)
    return _body(list(memory.get_finished_spans()))


def test_openinference_first_token_event_gives_time_to_first_token() -> None:
    body = _streamed({"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o"})
    (span,) = _records(body)
    assert span.HasField("ttft_ms") and span.ttft_ms == 250.0


def test_an_event_of_another_name_gives_no_time_to_first_token() -> None:
    (span,) = _records(_streamed({"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o"}, "retry"))
    assert not span.HasField("ttft_ms")


def test_traceai_streaming_model_inside_request_parameters_is_the_model_and_prices_it() -> None:
    attributes = {
        "gen_ai.span.kind": "LLM",
        "gen_ai.request.parameters": json.dumps({"model": "gpt-4o", "stream": True}),
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
    }
    (span,) = _records(_streamed(attributes))
    assert (span.model, span.kind, span.ttft_ms) == ("gpt-4o", "llm", 250.0)
    assert abs(span.cost - (1000 * 2.5 + 100 * 10.0) / 1e6) < 1e-12


def test_a_model_attribute_wins_over_the_request_parameters() -> None:
    attributes = {
        "llm.model_name": "gpt-4o-2024-08-06",
        "llm.invocation_parameters": json.dumps({"model": "gpt-4o"}),
    }
    (span,) = _records(_streamed(attributes))
    assert span.model == "gpt-4o-2024-08-06"


def test_langfuse_release_on_the_resource_is_the_app_version() -> None:
    provider, memory = _provider({"langfuse.release": "2.4.0"})
    with provider.get_tracer("t").start_as_current_span("gen", attributes={"langfuse.observation.type": "generation"}):
        pass
    (span,) = _records(_body(list(memory.get_finished_spans())))
    assert span.app_version == "2.4.0"


def test_a_trace_version_on_its_root_reaches_the_generations_of_the_trace() -> None:
    provider, memory = _provider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root", attributes={"langfuse.version": "checkout-v7"}):
        with tracer.start_as_current_span("gen", attributes={"langfuse.observation.type": "generation"}):
            pass
        with tracer.start_as_current_span("own", attributes={"langfuse.version": "tool-v1"}):
            pass
    with tracer.start_as_current_span("other trace"):
        pass
    spans = {s.name: s for s in _records(_body(list(memory.get_finished_spans())))}
    assert spans["root"].app_version == "checkout-v7"
    assert spans["gen"].app_version == "checkout-v7"
    assert spans["own"].app_version == "tool-v1"  # a span's own version stays its own
    assert spans["other trace"].app_version == ""


def test_the_c_path_leaves_what_only_python_does_to_python() -> None:
    provider, memory = _provider()
    with provider.get_tracer("t").start_as_current_span("gen", attributes={"gen_ai.request.model": "gpt-4o"}):
        pass
    plain = _body(list(memory.get_finished_spans()))
    assert not needs_python(plain)
    assert needs_python(_streamed({"llm.model_name": "gpt-4o"}))
    versioned, memory = _provider({"langfuse.release": "2.4.0"})
    with versioned.get_tracer("t").start_as_current_span("gen", attributes={"langfuse.version": "v1"}):
        pass
    assert not needs_python(_body(list(memory.get_finished_spans())))  # the resource's version wins: C does it
    if ACCELERATOR is not None:  # built: it takes the plain request, not the streamed one
        assert canonical_spans(decode_protobuf(plain), PROJECT, (BUILTIN,)) is not None
        assert canonical_spans(decode_protobuf(_streamed({"llm.model_name": "m"})), PROJECT, (BUILTIN,)) is None


def test_the_c_path_reads_the_model_inside_request_parameters_as_python_does() -> None:
    provider, memory = _provider({"project_version_name": "v3"})
    attributes = {
        "gen_ai.span.kind": "LLM",
        "gen_ai.request.parameters": json.dumps({"model": "gpt-4o", "stream": True}),
        "gen_ai.usage.input_tokens": 1000,
    }
    with provider.get_tracer("t").start_as_current_span("stream", attributes=attributes):
        pass
    body = _body(list(memory.get_finished_spans()))
    python = priced_records(normalise(decode_protobuf(body), PROJECT), (BUILTIN,))
    assert CanonicalSpan.FromString(python[0]).model == "gpt-4o"
    if ACCELERATOR is not None:
        assert canonical_spans(decode_protobuf(body), PROJECT, (BUILTIN,)) == python
