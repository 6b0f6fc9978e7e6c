"""Guarded rollouts' pure core: what a start may ask for, the split of each step, and what a step's
compare reply decides."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.errors import Invalid
from services.registry.rollouts import (
    Advance,
    CompareFailed,
    RollBack,
    Rollout,
    StartRequest,
    Wait,
    check_start,
    judge,
    rollback_event,
    split_at,
)


def _rollout(step: int = 0, baseline: int | None = 0) -> Rollout:
    return Rollout(
        id=uuid.UUID(int=7),
        project_id=uuid.UUID(int=1),
        prompt="reply",
        label="production",
        from_version=1,
        to_version=2,
        steps=(20, 50, 100),
        step=step,
        min_samples_per_step=200,
        guardrails=("latency_ms", "error_rate"),
        status="running",
        step_started_at=datetime(2026, 1, 1, tzinfo=UTC),
        baseline=baseline,
    )


def _comparison(metric: str, verdict: str, statistic: str = "median") -> dict[str, Any]:
    return {
        "metric": metric,
        "statistic": statistic,
        "a": {"n": 800, "estimate": 800.0},
        "b": {"n": 250, "estimate": 1040.0},
        "relative_difference": 0.3,
        "p_value": 1e-9,
        "verdict": verdict,
    }


def _reply(n_b: int, *comparisons: dict[str, Any]) -> dict[str, Any]:
    return {"a": {"version": 1, "n": 4 * n_b}, "b": {"version": 2, "n": n_b}, "metrics": list(comparisons)}


def test_a_start_gets_the_defaults_and_refuses_steps_that_do_not_rise_to_100() -> None:
    plan = check_start(StartRequest(label="production", to_version=3))
    assert plan.steps == (5, 25, 50, 100) and plan.min_samples_per_step == 200
    assert plan.guardrails == ("latency_ms", "error_rate")
    for steps in ([], [50, 20, 100], [10, 50], [0, 100], [20, 20, 100], [50, 150]):
        with pytest.raises(Invalid):
            check_start(StartRequest(label="production", to_version=3, steps=steps))
    with pytest.raises(Invalid, match="unknown guardrail"):
        check_start(StartRequest(label="production", to_version=3, guardrails=["vibes"]))
    with pytest.raises(Invalid):
        check_start(StartRequest(label="latest", to_version=3))
    assert check_start(StartRequest(label="p", to_version=3, guardrails=["score:helpfulness"])).guardrails == (
        "score:helpfulness",
    )


def test_each_step_splits_the_label_between_the_two_versions() -> None:
    assert split_at(1, 2, 20) == ((1, 80), (2, 20))
    assert split_at(3, 2, 20) == ((2, 20), (3, 80))  # by version, as the store keeps an allocation
    assert split_at(1, 2, 100) == ((2, 100),)
    assert split_at(1, 2, 0) == ((1, 100),)


def test_a_step_waits_for_its_own_samples_beyond_the_baseline() -> None:
    assert judge(_rollout(baseline=150), _reply(300)) == Wait(150)
    assert judge(_rollout(), {"error": {"code": "not_found", "message": "no runs"}}) == Wait(0)
    with pytest.raises(CompareFailed):
        judge(_rollout(), {"error": {"code": "unavailable", "message": "Postgres away"}})


def test_a_step_advances_without_a_worse_guardrail_and_completes_on_entering_100() -> None:
    first = judge(_rollout(0), _reply(250, _comparison("latency_ms", "no_difference")))
    assert isinstance(first, Advance) and (first.step, first.completed) == (1, False)
    last = judge(_rollout(1), _reply(250, _comparison("latency_ms", "b_better")))
    assert isinstance(last, Advance) and (last.step, last.completed) == (2, True)
    # a metric that is not a guardrail does not hold a rollout back
    other = judge(_rollout(0), _reply(250, _comparison("cost", "b_worse")))
    assert isinstance(other, Advance)


def test_a_worse_guardrail_rolls_back_naming_the_metric_and_makes_the_alert_event() -> None:
    worse = _comparison("latency_ms", "b_worse", "p95")
    decision = judge(_rollout(0), _reply(250, _comparison("error_rate", "no_difference", "rate"), worse))
    assert isinstance(decision, RollBack) and decision.metric == "latency_ms" and decision.comparison == worse
    assert "latency_ms (p95) is worse on version 2" in decision.reason and "+30.0%" in decision.reason
    detected = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    event = rollback_event(_rollout(0), decision, detected)
    assert event["id"] == f"{uuid.UUID(int=7)}:0" and event["kind"] == "rollback"
    assert event["detected_at"] == "2026-01-01T00:05:00Z" and event["comparison"] == worse
    assert (event["from_version"], event["to_version"], event["label"]) == (1, 2, "production")
