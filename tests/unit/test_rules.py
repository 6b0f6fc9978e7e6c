"""The rule-based evaluators' edge cases: pure functions, no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.evaluator.outcomes import EvaluationFailed
from services.evaluator.rules import (
    contains,
    exact_match,
    is_json,
    json_schema,
    length,
    levenshtein,
    regex,
)


def out(text: str, reference: str | None = None) -> dict[str, str]:
    return {"output": text} if reference is None else {"output": text, "reference": reference}


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ('{"a": 1}', True),
        ("[1, 2, 3]", True),
        ('  {"a": 1}\n', True),
        ("null", True),
        ("42", True),
        ('"a string"', True),
        ("", False),
        ("{'a': 1}", False),
        ('{"a": 1,}', False),
        ('```json\n{"a": 1}\n```', False),
        ("NaN", True),  # Python's json reads it, as OpenAI's SDK does
    ],
)
def test_is_json_accepts_only_what_parses(text: str, passed: bool) -> None:
    outcome = is_json(out(text), {})
    assert outcome.value == (1.0 if passed else 0.0)
    assert outcome.string_value == ("true" if passed else "false")
    assert outcome.explanation


def test_is_json_without_output_fails_with_the_reason() -> None:
    with pytest.raises(EvaluationFailed, match="no output"):
        is_json({}, {})


SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}


def test_json_schema_passes_valid_and_names_the_failing_path() -> None:
    assert json_schema(out('{"answer": "yes"}'), {"schema": SCHEMA}).value == 1.0
    wrong = json_schema(out('{"answer": 3}'), {"schema": SCHEMA})
    assert wrong.value == 0.0 and "answer" in wrong.explanation
    missing = json_schema(out("{}"), {"schema": SCHEMA})
    assert missing.value == 0.0 and "required" in missing.explanation


def test_json_schema_takes_the_schema_as_a_string_and_rejects_non_json_output() -> None:
    import json

    assert json_schema(out('{"answer": "x"}'), {"schema": json.dumps(SCHEMA)}).value == 1.0
    assert json_schema(out("not json"), {"schema": SCHEMA}).explanation.startswith("not JSON")


@pytest.mark.parametrize("config", [{}, {"schema": "{broken"}, {"schema": {"type": "no-such-type"}}])
def test_json_schema_refuses_a_missing_or_broken_schema(config: dict[str, object]) -> None:
    with pytest.raises(EvaluationFailed):
        json_schema(out("{}"), config)


def test_regex_searches_by_default_and_fullmatches_when_asked() -> None:
    assert regex(out("order #1234 shipped"), {"pattern": r"#\d+"}).value == 1.0
    assert regex(out("order #1234 shipped"), {"pattern": r"#\d+", "mode": "fullmatch"}).value == 0.0
    assert regex(out("#1234"), {"pattern": r"#\d+", "mode": "fullmatch"}).value == 1.0


def test_regex_flags_and_empty_output() -> None:
    assert regex(out("HELLO"), {"pattern": "hello"}).value == 0.0
    assert regex(out("HELLO"), {"pattern": "hello", "flags": "i"}).value == 1.0
    assert regex(out(""), {"pattern": "^$"}).value == 1.0


@pytest.mark.parametrize("config", [{}, {"pattern": ""}, {"pattern": "(unclosed"}, {"pattern": "a", "flags": "q"}])
def test_regex_refuses_a_missing_or_invalid_pattern(config: dict[str, object]) -> None:
    with pytest.raises(EvaluationFailed):
        regex(out("a"), config)


def test_contains_all_any_none_and_case() -> None:
    text = out("Refunds take 5 business days.")
    assert contains(text, {"values": ["Refunds", "days"]}).value == 1.0
    assert contains(text, {"values": ["Refunds", "weeks"]}).value == 0.0
    assert contains(text, {"values": ["Refunds", "weeks"], "mode": "any"}).value == 1.0
    assert contains(text, {"values": ["sorry"], "mode": "none"}).value == 1.0
    assert contains(text, {"value": "refunds"}).value == 0.0
    assert contains(text, {"value": "refunds", "case_sensitive": False}).value == 1.0


@pytest.mark.parametrize("config", [{}, {"values": []}, {"values": [1]}, {"values": ["a"], "mode": "most"}])
def test_contains_refuses_bad_config(config: dict[str, object]) -> None:
    with pytest.raises(EvaluationFailed):
        contains(out("a"), config)


def test_exact_match_strips_by_default_and_can_ignore_case_and_spacing() -> None:
    assert exact_match(out(" Paris\n", "Paris"), {}).value == 1.0
    assert exact_match(out("paris", "Paris"), {}).value == 0.0
    assert exact_match(out("paris", "Paris"), {"case_sensitive": False}).value == 1.0
    assert exact_match(out("New   York", "New York"), {"collapse_whitespace": True}).value == 1.0
    assert exact_match(out("", ""), {}).value == 1.0
    miss = exact_match(out("Parks", "Paris"), {})
    assert miss.value == 0.0 and "character 3" in miss.explanation


def test_exact_match_needs_a_reference() -> None:
    with pytest.raises(EvaluationFailed, match="reference"):
        exact_match(out("x"), {})


def test_levenshtein_similarity_edges() -> None:
    assert levenshtein(out("kitten", "kitten"), {}).value == 1.0
    assert levenshtein(out("", ""), {}).value == 1.0
    assert levenshtein(out("abc", ""), {}).value == 0.0
    value = levenshtein(out("kitten", "sitting"), {}).value
    assert value == pytest.approx(1 - 3 / 7)


@given(st.text(max_size=40), st.text(max_size=40))
def test_levenshtein_stays_in_range_and_is_symmetric(a: str, b: str) -> None:
    config = {"strip": False}
    forward = levenshtein(out(a, b), config).value
    backward = levenshtein(out(b, a), config).value
    assert forward is not None and 0.0 <= forward <= 1.0
    assert forward == pytest.approx(backward)
    assert (forward == 1.0) == (a == b)


def test_length_counts_characters_words_or_lines_and_reports_bounds() -> None:
    assert length(out("hello world"), {}).value == 11.0
    assert length(out("hello big world"), {"unit": "words"}).value == 3.0
    assert length(out("a\nb\nc"), {"unit": "lines"}).value == 3.0
    assert length(out(""), {}).value == 0.0
    assert "within [1, 20]" in length(out("short"), {"min": 1, "max": 20}).explanation
    assert "outside [, 0]" in length(out("long"), {"max": 0}).explanation
    with pytest.raises(EvaluationFailed):
        length(out("x"), {"unit": "tokens"})
