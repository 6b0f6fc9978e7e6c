"""The state machine: ok → pending → firing → resolved, `for`, `keep_firing_for`, `renotify`,
`no_data` and the warning level; which transitions notify."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from services.alert import rules
from services.alert.conditions import Level
from services.alert.states import RuleState, advance

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rule(**changes: Any) -> rules.Rule:
    body: dict[str, Any] = {"name": "r", "metric": "latency_ms", "condition": {"op": "above", "threshold": 10}}
    body.update(changes)
    return rules.parse(json.dumps(body).encode())


def _walk(rule: rules.Rule, levels: list[Level], every: float = 60.0) -> list[tuple[str | None, bool]]:
    """(event, notify) of each evaluation, one every `every` seconds."""
    state, out = RuleState(), []
    for i, level in enumerate(levels):
        step = advance(rule, state, level, T0 + timedelta(seconds=i * every))
        state = step.state
        out.append((step.event, step.notify))
    return out


def test_without_for_a_rule_fires_at_once_and_resolves_once() -> None:
    assert _walk(_rule(), ["none", "alert", "alert", "none", "none"]) == [
        (None, False),
        ("firing", True),
        (None, False),
        ("resolved", True),
        (None, False),
    ]


def test_for_holds_a_rule_in_pending_and_a_blip_goes_back_to_ok_without_a_notification() -> None:
    events = _walk(_rule(**{"for": "2m"}), ["alert", "none", "alert", "alert", "alert", "none"])
    assert events == [
        ("pending", False),
        ("ok", False),
        ("pending", False),
        (None, False),
        ("firing", True),
        ("resolved", True),
    ]


def test_keep_firing_for_rides_out_a_flap() -> None:
    events = _walk(_rule(keep_firing_for="3m"), ["alert", "none", "alert", "none", "none", "none", "none"])
    assert [e for e, _ in events] == ["firing", None, None, None, None, "resolved", None]  # 3m after it last held


def test_renotify_repeats_a_firing_notification_at_its_interval() -> None:
    events = _walk(_rule(renotify="2m"), ["alert"] * 6)
    assert events == [("firing", True), (None, False), ("firing", True), (None, False), ("firing", True), (None, False)]


def test_no_data_modes() -> None:
    assert [e for e, _ in _walk(_rule(no_data="ok"), ["alert", "no_data"])] == ["firing", "resolved"]
    assert [e for e, _ in _walk(_rule(no_data="alert"), ["no_data"])] == ["firing"]
    assert [e for e, _ in _walk(_rule(no_data="keep"), ["alert", "no_data", "no_data", "none"])] == [
        "firing",
        None,
        None,
        "resolved",
    ]


def test_the_warning_level_fires_first_and_a_change_of_level_is_a_transition() -> None:
    rule = _rule(warning=5)
    state = RuleState()
    seen = []
    for i, level in enumerate(["warning", "alert", "warning", "none"]):
        step = advance(rule, state, level, T0 + timedelta(minutes=i))
        state = step.state
        seen.append((step.event, state.level, step.notify))
    assert seen == [
        ("firing", "warning", True),
        ("firing", "alert", True),
        ("firing", "warning", True),
        ("resolved", None, True),
    ]
