"""Each convention's table, with spans shaped as that client sends them (built with the real
OpenTelemetry SDK and encoded by its real OTLP encoder)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from vane.v1.bus_pb2 import CanonicalSpan, SpanBatch, SpanStatus

from services.ingest import publish
from services.ingest.conventions import REGISTRY
from services.ingest.decode import decode_protobuf
from services.ingest.normalise import TABLES, map_attributes, normalise

PROJECT = "8d6f1c9e-6a55-4f7e-9d2b-3f1f4f3f0a11"


def canonical(attributes: dict[str, Any], resource: dict[str, Any] | None = None, error: str = "") -> CanonicalSpan:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("call", attributes=attributes) as span:
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
    # The whole pure path: OTLP bytes → normalise → the bus encoding → a CanonicalSpan as consumers read it.
    request = decode_protobuf(encode_spans(memory.get_finished_spans()).SerializeToString())
    (message,) = publish.encode_spans(PROJECT, normalise(request, PROJECT), 1, 1 << 20)
    spans = SpanBatch.FromString(message).spans
    assert len(spans) == 1
    return spans[0]


def test_genai_semantic_conventions_map_model_usage_and_messages() -> None:
    span = canonical(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 812,
            "gen_ai.usage.output_tokens": 96,
            "gen_ai.usage.cache_read.input_tokens": 512,
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
            "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"hello"}]}]',
        },
        {"service.name": "support-bot", "service.version": "2.1.0"},
    )
    assert (span.kind, span.model, span.project_name, span.app_version) == (
        "llm",
        "gpt-4o-2024-08-06",
        "support-bot",
        "2.1.0",
    )
    assert (span.input_tokens, span.output_tokens, span.total_tokens, span.cached_input_tokens) == (812, 96, 908, 512)
    assert span.session_id == "conv-1"
    assert json.loads(span.input)[0]["role"] == "user" and "hello" in span.output
    assert span.status == SpanStatus.SPAN_STATUS_OK


def test_openinference_llm_span_maps_kind_tokens_and_values() -> None:
    span = canonical(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-3-5-sonnet-20241022",
            "llm.token_count.prompt": 1200,
            "llm.token_count.completion": 300,
            "llm.token_count.total": 1500,
            "llm.token_count.prompt_details.cache_read": 1000,
            "input.value": '{"messages": [{"role": "user", "content": "Summarise"}]}',
            "input.mime_type": "application/json",
            "output.value": "A summary.",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "Summarise",
            "session.id": "s-9",
            "user.id": "u-3",
        }
    )
    assert (span.kind, span.model, span.input_tokens, span.output_tokens, span.total_tokens) == (
        "llm",
        "claude-3-5-sonnet-20241022",
        1200,
        300,
        1500,
    )
    assert span.cached_input_tokens == 1000
    assert span.output == "A summary." and "Summarise" in span.input
    assert (span.session_id, span.user_id) == ("s-9", "u-3")


def test_openinference_messages_alone_become_the_input() -> None:
    span = canonical(
        {
            "openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Be brief",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "Hi",
        }
    )
    assert json.loads(span.input) == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}]


def test_langfuse_generation_maps_prompt_usage_cost_and_completion_start() -> None:
    span = canonical(
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "gpt-4o-mini",
            "langfuse.observation.prompt.name": "support-reply",
            "langfuse.observation.prompt.version": 3,
            "langfuse.observation.usage_details": json.dumps({"input": 400, "output": 50, "input_cached_tokens": 100}),
            "langfuse.observation.cost_details": json.dumps({"input": 0.00006, "output": 0.00003}),
            "langfuse.observation.completion_start_time": '"2100-01-01T00:00:00.250000+00:00"',
            "langfuse.observation.input": json.dumps([{"role": "user", "content": "Where is my order?"}]),
            "langfuse.observation.output": json.dumps({"role": "assistant", "content": "On its way."}),
            "langfuse.version": "release-7",
            "session.id": "sess-1",
            "user.id": "user-1",
        }
    )
    assert (span.kind, span.model, span.prompt_name, span.prompt_version) == ("llm", "gpt-4o-mini", "support-reply", 3)
    assert (span.input_tokens, span.output_tokens, span.cached_input_tokens, span.total_tokens) == (400, 50, 100, 450)
    assert abs(span.cost - 0.00009) < 1e-12
    assert span.app_version == "release-7" and (span.session_id, span.user_id) == ("sess-1", "user-1")
    assert "On its way." in span.output
    assert not span.HasField("ttft_ms")  # a first token after the span ended is ignored


def test_langfuse_completion_start_time_gives_time_to_first_token() -> None:
    fields = map_attributes({"langfuse.observation.completion_start_time": '"2025-01-01T00:00:00.250000Z"'})
    assert fields["completion_start_ns"] == 1735689600_250000000


def test_langfuse_error_level_marks_the_span_failed() -> None:
    span = canonical({"langfuse.observation.level": "ERROR", "langfuse.observation.status_message": "rate limited"})
    assert span.status == SpanStatus.SPAN_STATUS_ERROR and span.error_message == "rate limited"


def test_abv_observation_attributes_map_like_langfuse() -> None:
    span = canonical(
        {
            "abv.observation.type": "generation",
            "abv.observation.model.name": "gpt-4.1",
            "abv.observation.prompt.name": "triage",
            "abv.observation.prompt.version": "2",
            "abv.observation.usage_details": '{"input": 10, "output": 5}',
        }
    )
    assert (span.kind, span.model, span.prompt_name, span.prompt_version, span.total_tokens) == (
        "llm",
        "gpt-4.1",
        "triage",
        2,
        15,
    )


def test_openllmetry_span_maps_numbered_prompts_and_usage() -> None:
    span = canonical(
        {
            "llm.request.type": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-3.5-turbo",
            "gen_ai.response.model": "gpt-3.5-turbo-0125",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "Tell me a joke",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "Why did the chicken…",
            "gen_ai.usage.prompt_tokens": 12,
            "gen_ai.usage.completion_tokens": 20,
            "llm.usage.total_tokens": 32,
            "traceloop.association.properties.session_id": "tl-session",
            "traceloop.association.properties.user_id": "tl-user",
        }
    )
    assert (span.kind, span.model, span.input_tokens, span.output_tokens, span.total_tokens) == (
        "llm",
        "gpt-3.5-turbo-0125",
        12,
        20,
        32,
    )
    assert json.loads(span.input) == [{"role": "user", "content": "Tell me a joke"}]
    assert json.loads(span.output)[0]["content"].startswith("Why did")
    assert (span.session_id, span.user_id) == ("tl-session", "tl-user")


def test_openllmetry_workflow_span_is_a_chain_with_entity_io() -> None:
    span = canonical(
        {"traceloop.span.kind": "workflow", "traceloop.entity.input": '{"q": 1}', "traceloop.entity.output": '"a"'}
    )
    assert (span.kind, span.input, span.output) == ("chain", '{"q": 1}', '"a"')


def test_traceai_resource_and_span_attributes_map_version_prompt_cost_and_eval_tags() -> None:
    eval_tags = json.dumps([{"type": "OBSERVATION_SPAN_TYPE", "value": "LLM", "eval_name": "is_json", "mapping": {}}])
    span = canonical(
        {
            "gen_ai.span.kind": "LLM",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.cost.total": 0.5,
            "gen_ai.prompt.template.name": "support-reply",
            "gen_ai.prompt.template.version": "4",
            "gen_ai.prompt.template.label": "production",
            "gen_ai.server.time_to_first_token": 180.0,
            "input.value": "Hi",
            "output.value": "Hello",
        },
        {
            "project_name": "my-chatbot",
            "project_type": "experiment",
            "project_version_name": "gpt-4o-concise-prompt",
            "eval_tags": eval_tags,
            "metadata": '{"team": "support"}',
        },
    )
    assert (span.project_name, span.project_type, span.app_version) == (
        "my-chatbot",
        "experiment",
        "gpt-4o-concise-prompt",
    )
    assert (span.prompt_name, span.prompt_version, span.prompt_label) == ("support-reply", 4, "production")
    assert span.cost == 0.5 and span.ttft_ms == 180.0
    assert json.loads(span.eval_tags_json)[0]["eval_name"] == "is_json"
    assert json.loads(span.metadata_json) == {"team": "support"}


def test_an_error_status_carries_its_message() -> None:
    span = canonical({"gen_ai.request.model": "gpt-4o"}, error="upstream 500")
    assert span.status == SpanStatus.SPAN_STATUS_ERROR and span.error_message == "upstream 500"


def test_a_span_without_a_model_or_kind_is_a_plain_span() -> None:
    assert canonical({"http.method": "GET"}).kind == "span"


def test_earlier_conventions_win_over_later_ones() -> None:
    # Langfuse's explicit model name comes before the generic gen_ai.request.model.
    fields = map_attributes({"gen_ai.request.model": "generic", "langfuse.observation.model.name": "explicit"})
    assert fields["model"] == "explicit"


def test_every_attribute_is_kept_for_evaluator_mappings() -> None:
    span = canonical({"custom.key": "x", "gen_ai.request.model": "m"})
    assert json.loads(span.attributes_json) == {"custom.key": "x", "gen_ai.request.model": "m"}


def test_every_table_maps_into_canonical_fields_only() -> None:
    assert [c.name for c in REGISTRY] == [
        "langfuse",
        "abv",
        "traceai",
        "openinference",
        "traceloop",
        "genai",
        "traceai-parameters",
        "openinference-parameters",
    ]
    assert TABLES.span and TABLES.resource


@given(
    st.dictionaries(
        st.sampled_from(sorted(TABLES.span)),
        st.one_of(st.integers(0, 10**9), st.text(min_size=1, max_size=20), st.floats(0, 1e6)),
        max_size=12,
    )
)
def test_mapping_never_loses_a_field_it_understands(attrs: dict[str, Any]) -> None:
    fields = map_attributes(attrs)
    for key, value in attrs.items():
        for _, field, convert, expands in TABLES.span[key]:
            converted = convert(value)
            if converted is not None:
                for name in converted if expands else (field,):
                    assert name in fields, (key, value, name)
