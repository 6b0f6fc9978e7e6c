"""A rule's state machine: ok → pending → firing → resolved (→ pending …), as Prometheus runs it.

`for` holds a condition in pending before it fires; `keep_firing_for` keeps a firing rule firing
that long after its condition last held (against flapping); `renotify` repeats a firing
notification at that interval; a `warning` level fires (and resolves) like the alert level, and a
move between the two levels is a transition of its own. `no_data`: `ok` counts no data as the
condition not holding, `alert` as holding at the alert level, `keep` leaves the state as it is.

Which transitions notify: firing (at either level, and each change of level while firing),
resolved, and each renotify. Entering pending, and a pending rule going back to ok, are recorded as
events but sent nowhere: a notification for something that has not yet held for `for` is what
`for` exists to avoid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from services.alert.conditions import Level
from services.alert.rules import Rule

State = str  # "ok", "pending", "firing", "resolved"


@dataclass(frozen=True)
class RuleState:
    state: State = "ok"
    level: str | None = None  # "warning" or "alert" while pending or firing
    since: datetime | None = None  # when the current state (at its level) began
    active_at: datetime | None = None  # the last time the condition held
    notified_at: datetime | None = None


@dataclass(frozen=True)
class Step:
    state: RuleState
    event: State | None = None  # the transition to record, if any
    notify: bool = False
    renotify: bool = False


def advance(rule: Rule, current: RuleState, level: Level, now: datetime) -> Step:
    """The next state of a rule whose condition evaluated to `level` at `now`."""
    if level == "no_data":
        mode = rule.body.no_data
        if mode == "keep":
            return Step(current)
        level = "alert" if mode == "alert" else "none"
    holding = level in ("warning", "alert")
    s = current
    if s.state in ("ok", "resolved"):
        if not holding:
            return Step(s)
        if rule.for_seconds <= 0:
            return _fire(s, level, now)
        return Step(RuleState("pending", level, now, now, s.notified_at), "pending")
    if s.state == "pending":
        if not holding:
            return Step(RuleState("ok", None, now, s.active_at, s.notified_at), "ok")
        assert s.since is not None
        if (now - s.since).total_seconds() >= rule.for_seconds:
            return _fire(s, level, now)
        return Step(replace(s, level=level, active_at=now))
    # firing
    if holding:
        if level != s.level:
            return _fire(s, level, now)
        renotify = rule.renotify_seconds
        due = s.notified_at is None or (renotify is not None and (now - s.notified_at).total_seconds() >= renotify)
        if renotify is not None and due:
            return Step(replace(s, active_at=now, notified_at=now), "firing", notify=True, renotify=True)
        return Step(replace(s, active_at=now))
    assert s.active_at is not None
    if (now - s.active_at).total_seconds() < rule.keep_firing_seconds:
        return Step(s)
    return Step(RuleState("resolved", None, now, s.active_at, now), "resolved", notify=True)


def _fire(s: RuleState, level: str, now: datetime) -> Step:
    return Step(RuleState("firing", level, now, now, now), "firing", notify=True)
