"""Alert rules: what a valid rule becomes, and every refusal naming the field at fault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.alert import rules
from services.common.errors import Invalid


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "slow replies",
        "scope": {"prompt": "support-reply", "label": "production"},
        "metric": "latency_ms",
        "statistic": "p95",
        "condition": {"op": "above", "threshold": 2000},
        "window": "5m",
        "for": "2m",
        "severity": "critical",
        "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3cret"}],
        "warning": 1500,
        "keep_firing_for": "10m",
        "renotify": "1h",
    }
    body.update(changes)
    return body


def _refused(body: dict[str, Any]) -> str:
    with pytest.raises(Invalid) as caught:
        rules.parse(json.dumps(body).encode())
    return str(caught.value.details["field"])


def test_a_valid_rule_has_its_durations_in_seconds_and_window_in_minutes() -> None:
    rule = rules.parse(json.dumps(_body()).encode())
    assert (rule.window_minutes, rule.for_seconds, rule.keep_firing_seconds, rule.renotify_seconds) == (
        5,
        120,
        600,
        3600,
    )
    assert rules.to_spec(rule)["for"] == "2m"
    assert rules.parse(rules.to_spec(rule)) == rule  # the stored spec reads back as the same rule


def test_defaults_pick_the_statistic_by_metric() -> None:
    assert (
        rules.parse(json.dumps(_body(metric="error_rate", statistic=None, warning=None)).encode()).statistic == "rate"
    )
    assert rules.parse(json.dumps(_body(statistic=None)).encode()).statistic == "median"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metric": "latency"}, "metric"),
        ({"statistic": "p42"}, "statistic"),
        ({"metric": "latency_ms", "statistic": "rate"}, "statistic"),
        ({"condition": {"op": "above"}}, "condition.threshold"),
        ({"condition": {"op": "sideways", "threshold": 1}}, "condition.op"),
        ({"condition": {"op": "change", "pct": 0}, "warning": None}, "condition.pct"),
        (
            {"condition": {"op": "change", "pct": 20, "baseline_window": "90s"}, "warning": None},
            "condition.baseline_window",
        ),
        ({"window": "5 minutes"}, "window"),
        ({"window": "30s"}, "window"),
        ({"for": "soon"}, "for"),
        ({"severity": "page"}, "severity"),
        ({"no_data": "panic"}, "no_data"),
        ({"warning": 2500}, "warning"),
        ({"min_samples": 0}, "min_samples"),
        ({"channels": [{"type": "webhook", "url": "http://x/y"}]}, "channels[0].secret"),
        ({"channels": [{"type": "slack", "url": "ftp://x/y"}]}, "channels[0].url"),
        ({"channels": [{"type": "pager", "url": "http://x/y"}]}, "channels[0].type"),
        ({"scope": {"prompt": "p", "colour": "red"}}, "scope.colour"),
        ({"scope": {"prompt_version": 2}}, "scope.prompt_version"),
        ({"metric": "run_latency_ms", "statistic": "median"}, "scope.prompt"),
        ({"name": ""}, "name"),
        ({"keep_firing_for": "forever"}, "keep_firing_for"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    assert _refused(_body(**changes)) == field


def test_a_missing_field_is_named() -> None:
    body = _body()
    del body["metric"]
    assert _refused(body) == "metric"


def test_a_patch_is_checked_as_a_whole_rule() -> None:
    spec = rules.to_spec(rules.parse(json.dumps(_body()).encode()))
    assert rules.merged(spec, b'{"window": "15m"}').window_minutes == 15
    with pytest.raises(Invalid, match=r"^warning: "):
        rules.merged(spec, b'{"condition": {"op": "above", "threshold": 1000}}')


def test_a_standard_webhooks_secret_is_its_base64_key_and_any_other_string_its_bytes() -> None:
    assert rules.signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == __import__("base64").b64decode(
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )
    assert rules.signing_key("s3cret") == b"s3cret"


def test_a_rule_without_scope_or_channels_is_stored_with_both_empty() -> None:
    spec = rules.to_spec(rules.parse(b'{"name": "r", "metric": "cost", "condition": {"op": "above", "threshold": 1}}'))
    assert spec["scope"] == {} and spec["channels"] == [] and spec["statistic"] == "median"
