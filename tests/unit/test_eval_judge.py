"""The judge's rubrics, the reading of its answers, Retry-After and pricing: pure, no server."""

from __future__ import annotations

import email.utils
import time

import pytest

from services.evaluator.config import JudgeDefaults
from services.evaluator.judge import cost_of, endpoint_for, retry_after_seconds
from services.evaluator.outcomes import EvaluationFailed
from services.evaluator.rubrics import RUBRICS, build_messages, parse_verdict


@pytest.mark.parametrize(
    ("content", "score", "explanation"),
    [
        ('{"score": 0.8, "explanation": "mostly relevant"}', 0.8, "mostly relevant"),
        ('```json\n{"score": 1, "explanation": "ok"}\n```', 1.0, "ok"),
        ('Here you go: {"score": "0.25", "reason": "weak"} hope it helps', 0.25, "weak"),
        ('{"value": true}', 1.0, ""),
        ('{"rating": 0}', 0.0, ""),
    ],
)
def test_verdicts_are_read_from_json_answers(content: str, score: float, explanation: str) -> None:
    assert parse_verdict(content) == (score, explanation)


@pytest.mark.parametrize(
    "content",
    ["I think it's great!", "", '{"explanation": "no score"}', '{"score": "high"}', '{"score": 7}', "[0.5]"],
)
def test_answers_without_a_usable_score_fail_and_never_make_one_up(content: str) -> None:
    with pytest.raises(EvaluationFailed):
        parse_verdict(content)


def test_each_rubric_names_what_it_needs_and_fills_it_in() -> None:
    inputs = {"input": "Q?", "output": "A.", "reference": "R.", "context": "C."}
    for name, rubric in RUBRICS.items():
        messages = build_messages(inputs, {"rubric": name})
        assert messages[0]["role"] == "system" and "JSON" in messages[0]["content"]
        for need in rubric.needs:
            assert inputs[need] in messages[1]["content"]
        assert "{{" not in messages[1]["content"]


def test_a_rubric_missing_its_input_fails_before_calling_the_judge() -> None:
    with pytest.raises(EvaluationFailed, match="context"):
        build_messages({"output": "A."}, {"rubric": "groundedness"})
    with pytest.raises(EvaluationFailed, match="unknown rubric"):
        build_messages({"output": "A."}, {"rubric": "vibes"})


def test_a_custom_prompt_and_criteria_are_used() -> None:
    messages = build_messages(
        {"output": "Bonjour", "input": "hi"}, {"prompt": "Is {{ output }} French?", "criteria": "Be strict."}
    )
    assert "Is Bonjour French?" in messages[1]["content"] and "Be strict." in messages[1]["content"]


def test_retry_after_reads_seconds_and_http_dates_and_is_capped() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("100000") == 60.0
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    seconds = retry_after_seconds(later)
    assert seconds is not None and 0 < seconds <= 6


def test_judge_endpoint_from_config_or_defaults_and_its_price() -> None:
    defaults = JudgeDefaults(base_url="http://judge.local/v1/", model="gpt-4o-mini", api_key="k")
    endpoint = endpoint_for({}, defaults)
    assert endpoint.url == "http://judge.local/v1/chat/completions" and endpoint.api_key == "k"
    assert cost_of(endpoint, 1_000_000, 1_000_000) == pytest.approx(0.75)
    custom = endpoint_for({"base_url": "http://other", "model": "local-llama", "input_price_per_mtok": 1}, defaults)
    assert custom.url == "http://other/chat/completions" and custom.model == "local-llama"
    assert cost_of(custom, 10, 10) is None  # no output price known: no made-up cost


def test_a_rule_reads_only_the_key_variables_the_operator_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_JUDGE_KEY", "sk-team")
    monkeypatch.setenv("VANE_DATABASE_URL", "postgresql://secret@db/vane")
    defaults = JudgeDefaults()
    rule = {"base_url": "http://attacker.example", "api_key_env": "VANE_DATABASE_URL"}
    assert endpoint_for(rule, defaults).api_key == ""  # never an arbitrary variable to a rule's URL
    monkeypatch.setenv("VANE_JUDGE_KEY_ENVS", "TEAM_JUDGE_KEY")
    assert endpoint_for(rule, defaults).api_key == ""
    assert endpoint_for({**rule, "api_key_env": "TEAM_JUDGE_KEY"}, defaults).api_key == "sk-team"
