"""Guarded rollouts, the pure part: what a start request may ask for, the split at each step, and
what a step's comparison (the aggregator's compare reply) decides.

A rollout moves a label from `from_version` to `to_version` through `steps` (to_version's weight,
rising to 100). At each step it waits until to_version has `min_samples_per_step` generations since
the step began, then advances when no guardrail metric is `b_worse`, and rolls back when one is.
Entering the last step (100) completes it: the label then points at to_version alone.
"""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec

from services.common.errors import Invalid
from services.registry.rules import check_label

Status = Literal["running", "completed", "rolled_back", "aborted"]
Event = Literal["started", "advanced", "completed", "rolled_back", "aborted"]
Allocation = tuple[tuple[int, int], ...]

DEFAULT_STEPS = (5, 25, 50, 100)
DEFAULT_MIN_SAMPLES = 200
DEFAULT_GUARDRAILS = ("latency_ms", "error_rate")
MAX_STEPS = 20
# The prompt METRICs the aggregator compares (CONTRACT "Deciding"), and a score by its name.
METRICS = frozenset(("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "total_tokens", "cost", "error_rate"))
_SCORE = re.compile(r"^score:.+$")


class StartRequest(msgspec.Struct, forbid_unknown_fields=True):
    """POST /api/v1/prompts/{name}/rollouts."""

    label: str
    to_version: int
    steps: list[int] = msgspec.field(default_factory=lambda: list(DEFAULT_STEPS))
    min_samples_per_step: int = DEFAULT_MIN_SAMPLES
    guardrails: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_GUARDRAILS))


@dataclass(frozen=True)
class Plan:
    """A start request, checked."""

    label: str
    to_version: int
    steps: tuple[int, ...]
    min_samples_per_step: int
    guardrails: tuple[str, ...]


def check_start(request: StartRequest) -> Plan:
    """Refuse the first rule a start request breaks (Invalid, a 400)."""
    label = check_label(request.label)
    if request.to_version <= 0:
        raise Invalid(f"to_version must be a positive version number, got {request.to_version}")
    steps = request.steps
    if not steps or len(steps) > MAX_STEPS:
        raise Invalid(f"steps must list 1 to {MAX_STEPS} weights of to_version, ending at 100")
    if any(not 0 < s <= 100 for s in steps) or any(b <= a for a, b in itertools.pairwise(steps)):
        raise Invalid(f"steps must rise strictly within 1..100, got {steps}")
    if steps[-1] != 100:
        raise Invalid(f"the last step must be 100 (to_version serves everything), got {steps[-1]}")
    if request.min_samples_per_step <= 0:
        raise Invalid(f"min_samples_per_step must be positive, got {request.min_samples_per_step}")
    guardrails = tuple(dict.fromkeys(request.guardrails))
    if not guardrails:
        raise Invalid("guardrails must name at least one metric (latency_ms, error_rate, score:<name>, …)")
    unknown = [m for m in guardrails if m not in METRICS and not _SCORE.match(m)]
    if unknown:
        raise Invalid(f"unknown guardrail metric {unknown[0]!r}: one of {sorted(METRICS)} or score:<name>")
    return Plan(label, request.to_version, tuple(steps), request.min_samples_per_step, guardrails)


def split_at(from_version: int, to_version: int, weight: int) -> Allocation:
    """The label's allocation while to_version has `weight` percent (by version, as the store keeps it)."""
    if weight >= 100:
        return ((to_version, 100),)
    if weight <= 0:
        return ((from_version, 100),)
    return tuple(sorted(((from_version, 100 - weight), (to_version, weight))))


@dataclass(frozen=True)
class Rollout:
    """One rollout as stored."""

    id: uuid.UUID
    project_id: uuid.UUID
    prompt: str
    label: str
    from_version: int
    to_version: int
    steps: tuple[int, ...]
    step: int
    min_samples_per_step: int
    guardrails: tuple[str, ...]
    status: Status
    step_started_at: datetime
    # to_version's generations already counted in the step's first minute when the step began: the
    # aggregator's windows are whole minutes, so the step's own samples are the count beyond it.
    baseline: int | None = None

    @property
    def weight(self) -> int:
        """to_version's weight now: 0 once rolled back or aborted."""
        return self.steps[self.step] if self.status in ("running", "completed") else 0

    @property
    def expected_split(self) -> Allocation:
        return split_at(self.from_version, self.to_version, self.weight)

    def compare_request(self, now: datetime) -> dict[str, Any]:
        """The aggregator's compare over this step so far: from_version as a, to_version as b
        (asked with `now` at the step's start, it counts what came before the step in its minute)."""
        return {
            "project_id": str(self.project_id),
            "kind": "prompt",
            "name": self.prompt,
            "a": str(self.from_version),
            "b": str(self.to_version),
            "from": iso(self.step_started_at),
            "to": iso(now),
            "metrics": list(self.guardrails),
        }


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class CompareFailed(Exception):
    """The aggregator could not answer (no replica, a timeout, an error other than no runs)."""


@dataclass(frozen=True)
class Wait:
    samples: int


@dataclass(frozen=True)
class Advance:
    step: int
    completed: bool
    reason: str


@dataclass(frozen=True)
class RollBack:
    metric: str
    comparison: dict[str, Any]
    reason: str


Decision = Wait | Advance | RollBack


def samples_of(reply: dict[str, Any]) -> int:
    """to_version's generations in a compare reply (0 when a version has no runs in the range)."""
    error = reply.get("error")
    if isinstance(error, dict):
        if error.get("code") == "not_found":
            return 0
        raise CompareFailed(f"{error.get('code')}: {error.get('message')}")
    try:
        return int(reply["b"]["n"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CompareFailed(f"unexpected compare reply: {exc!r}") from None


def judge(rollout: Rollout, reply: dict[str, Any]) -> Decision:
    """What a step's compare reply decides for a running rollout."""
    samples = samples_of(reply) - (rollout.baseline or 0)
    if samples < rollout.min_samples_per_step:
        return Wait(max(samples, 0))
    try:
        comparisons = [c for c in reply["metrics"] if c["metric"] in rollout.guardrails]
    except (KeyError, TypeError) as exc:
        raise CompareFailed(f"unexpected compare reply: {exc!r}") from None
    where = f"step {rollout.step} ({rollout.steps[rollout.step]}%)"
    worse = [c for c in comparisons if c.get("verdict") == "b_worse"]
    if worse:
        first = worse[0]
        return RollBack(first["metric"], first, f"{_regressed(rollout, first)} at {where}: rolled back")
    checked = ", ".join(sorted({c["metric"] for c in comparisons})) or "none had data"
    following = rollout.step + 1
    completed = rollout.steps[following] >= 100
    reason = f"{where} passed with {samples} runs on version {rollout.to_version}; no guardrail regressed ({checked})"
    if completed:
        reason += f"; version {rollout.to_version} now serves all of {rollout.label!r}"
    return Advance(following, completed, reason)


def _regressed(rollout: Rollout, comparison: dict[str, Any]) -> str:
    a, b = comparison.get("a") or {}, comparison.get("b") or {}
    text = (
        f"{comparison['metric']} ({comparison.get('statistic')}) is worse on version {rollout.to_version}: "
        f"{_number(b.get('estimate'))} against {_number(a.get('estimate'))} on version {rollout.from_version}"
    )
    relative, p = comparison.get("relative_difference"), comparison.get("p_value")
    if isinstance(relative, int | float):
        text += f" ({relative:+.1%}"
        text += f", p={p:.2g})" if isinstance(p, int | float) else ")"
    return text


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "–"


def rollback_event(rollout: Rollout, decision: RollBack, detected_at: datetime) -> dict[str, Any]:
    """What the alert service hears of a rollback (JetStream `decisions.rollback`)."""
    return {
        "kind": "rollback",
        "project_id": str(rollout.project_id),
        "id": f"{rollout.id}:{rollout.step}",
        "prompt": rollout.prompt,
        "label": rollout.label,
        "from_version": rollout.from_version,
        "to_version": rollout.to_version,
        "metric": decision.metric,
        "detected_at": iso(detected_at),
        "comparison": decision.comparison,
        "reason": decision.reason,
    }
