"""Which evaluations a span gets, and where their inputs come from: pure, no server."""

from __future__ import annotations

import json
import uuid

import pytest
from vane.v1 import bus_pb2

from services.evaluator.mapping import resolve, resolve_inputs
from services.evaluator.selection import ProjectRule, matches, plan, read_tag, sampled
from services.evaluator.spans import SpanView, from_proto

PROJECT = str(uuid.uuid4())


def span(i: int = 1, **fields: object) -> SpanView:
    base: dict[str, object] = {
        "project_id": PROJECT,
        "trace_id": i.to_bytes(16, "big"),
        "span_id": i.to_bytes(8, "big"),
        "kind": "llm",
        "output": "Paris",
        "input": "Capital of France?",
    }
    return SpanView(**{**base, **fields})  # type: ignore[arg-type]


GENAI_ATTRIBUTES = {
    "gen_ai.output.messages": json.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": "Bonjour"}], "finish_reason": "stop"}]
    ),
    "gen_ai.input.messages": json.dumps([{"role": "user", "content": "Say hello"}]),
    "output.value": "from output.value",
    "retrieval": {"documents": [{"content": "doc zero"}, {"content": "doc one"}]},
    "llm.token_count.total": 12,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("output", "Paris"),
        ("input", "Capital of France?"),
        ("output.value", "from output.value"),
        ("gen_ai.output.messages.0.content", "Bonjour"),
        ("gen_ai.input.messages.0.content", "Say hello"),
        ("gen_ai.input.messages.0.role", "user"),
        ("gen_ai.input.messages.-1.content", "Say hello"),
        ("retrieval.documents.1.content", "doc one"),
        ("attributes.retrieval.documents.0.content", "doc zero"),
        ("llm.token_count.total", "12"),
        ("gen_ai.output.messages.5.content", None),
        ("no.such.path", None),
    ],
)
def test_paths_reach_flat_keys_json_strings_and_list_indexes(path: str, expected: str | None) -> None:
    assert resolve(span(attributes=GENAI_ATTRIBUTES), path) == expected


def test_output_value_falls_back_to_the_canonical_output() -> None:
    assert resolve(span(output="canonical"), "output.value") == "canonical"
    assert resolve(span(output="", attributes={"output.value": "attr"}), "output") == "attr"


def test_mapped_inputs_missing_paths_and_constants() -> None:
    inputs, missing = resolve_inputs(
        span(attributes=GENAI_ATTRIBUTES),
        {"output": "gen_ai.output.messages.0.content", "context": "nowhere"},
        {"reference": "Bonjour"},
    )
    assert inputs == {"output": "Bonjour", "reference": "Bonjour", "input": "Capital of France?"}
    assert missing == {"context": "nowhere"}


TRACEAI_TAG = {
    "type": "OBSERVATION_SPAN_TYPE",
    "value": "LLM",
    "eval_name": "is_json",
    "config": {},
    "mapping": {"text": "output.value"},
    "custom_eval_name": "output_is_json",
    "model": "turing_flash",
}


def test_traceai_tag_is_translated_to_vane_names() -> None:
    tag = read_tag(TRACEAI_TAG)
    assert tag is not None
    assert (tag.name, tag.evaluator, tag.span_kind, dict(tag.mapping)) == (
        "output_is_json",
        "is_json",
        "llm",
        {"output": "output.value"},
    )
    judge = read_tag({**TRACEAI_TAG, "eval_name": "toxicity", "mapping": {"input": "output.value"}})
    assert judge is not None and judge.evaluator == "llm_judge" and judge.config["rubric"] == "toxicity"
    assert dict(judge.mapping) == {"output": "output.value"}


def test_vane_spelling_and_unknown_evaluators() -> None:
    tag = read_tag({"evaluator": "regex", "span_kind": "llm", "config": {"pattern": "x"}, "name": "has_x"})
    assert tag is not None and tag.name == "has_x" and tag.config == {"pattern": "x"}
    assert read_tag({"eval_name": "pii", "value": "LLM"}) is None
    assert read_tag("not a tag") is None


def test_tags_target_only_their_span_kind() -> None:
    tags = [TRACEAI_TAG]
    assert [p.name for p in plan(span(kind="llm", eval_tags=tags), [])] == ["output_is_json"]
    assert plan(span(kind="retriever", eval_tags=tags), []) == []


def rule(**fields: object) -> ProjectRule:
    base: dict[str, object] = {"id": uuid.uuid4(), "name": "len", "evaluator": "length"}
    return ProjectRule(**{**base, **fields})  # type: ignore[arg-type]


def test_rule_filters_match_versions_prompts_kinds_and_model_globs() -> None:
    s = span(app_version="v2", prompt_name="support", prompt_label="production", model="gpt-4o-mini")
    assert matches({}, s)
    assert matches({"app_version": "v2", "model": "gpt-4o*", "span_kind": "LLM"}, s)
    assert matches({"app_version": ["v1", "v2"], "prompt_label": "production"}, s)
    assert not matches({"app_version": "v1"}, s)
    assert not matches({"prompt_name": "other"}, s)
    assert matches({"prompt_version": ["0"]}, s)


def test_disabled_rules_and_duplicate_names_are_skipped() -> None:
    s = span()
    assert plan(s, [rule(enabled=False)]) == []
    planned = plan(s, [rule(), rule(evaluator="is_json")])
    assert [(p.name, p.spec.name) for p in planned] == [("len", "length")]


def test_sampling_is_deterministic_per_span_and_close_to_the_rate() -> None:
    r = rule(sampling_rate=0.1)
    picked = [i for i in range(5000) if plan(span(i), [r])]
    assert 400 <= len(picked) <= 600
    assert picked == [i for i in range(5000) if plan(span(i), [r])]
    assert not sampled(span(), "x", 0.0) and sampled(span(), "x", 1.0)


def test_score_id_is_stable_and_distinct_per_name_and_span() -> None:
    r = rule()
    a1, a2 = plan(span(1), [r])[0], plan(span(1), [r])[0]
    assert a1.score_id(span(1)) == a2.score_id(span(1))
    assert a1.score_id(span(1)) != a1.score_id(span(2))
    other = plan(span(1), [rule(name="len2")])[0]
    assert other.score_id(span(1)) != a1.score_id(span(1))


def test_span_view_reads_the_canonical_span_and_tolerates_bad_json() -> None:
    proto = bus_pb2.CanonicalSpan(
        project_id=PROJECT,
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        kind="LLM",
        output="hi",
        eval_tags_json=json.dumps(json.dumps([TRACEAI_TAG])),
        attributes_json="{broken",
    )
    view = from_proto(proto)
    assert view.kind == "llm" and view.attributes == {} and view.eval_tags == [TRACEAI_TAG]


@pytest.mark.parametrize(
    ("eval_name", "output", "passed"),
    [
        ("one_line", "Paris.", True),
        ("one_line", "Paris.\nLyon.", False),
        ("is_email", "ada@example.org", True),
        ("is_email", "write to ada", False),
        ("contains_valid_link", "see https://example.org/docs", True),
        ("contains_valid_link", "see the docs", False),
        ("is_json", '{"a": 1}', True),
    ],
)
def test_traceai_text_checks_run_with_traceai_mapping_keys(eval_name: str, output: str, passed: bool) -> None:
    from services.evaluator.rules import RULES

    tag = {"eval_name": eval_name, "value": "LLM", "mapping": {"text": "output.value"}, "custom_eval_name": "mine"}
    (planned,) = plan(span(attributes={"output.value": output}, eval_tags=[tag]), [])
    assert planned.name == "mine" and planned.inputs["output"] == output
    assert RULES[planned.spec.name](planned.inputs, planned.config).value == (1.0 if passed else 0.0)
