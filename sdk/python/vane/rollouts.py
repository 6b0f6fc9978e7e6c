"""Guarded rollouts from code: start one on a prompt's label, follow it, abort it, through the
registry's HTTP API (VANE_REGISTRY_URL, default http://127.0.0.1:8081)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from vane.config import ClientConfig
from vane.http_json import call


@dataclass(frozen=True)
class RolloutStep:
    """One entry of a rollout's history: when a step began or the rollout ended, and why."""

    at: str
    step: int  # index into the rollout's steps
    weight: int  # to_version's weight from then on
    event: str  # started, advanced, completed, rolled_back or aborted
    reason: str


@dataclass(frozen=True)
class Rollout:
    id: str
    prompt: str
    label: str
    from_version: int
    to_version: int
    steps: list[int]
    step: int
    weight: int
    status: str  # running, completed, rolled_back or aborted
    min_samples_per_step: int
    guardrails: list[str]
    created_at: str
    finished_at: str | None
    history: list[RolloutStep]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Rollout:
        return cls(
            id=body["id"],
            prompt=body["prompt"],
            label=body["label"],
            from_version=body["from_version"],
            to_version=body["to_version"],
            steps=list(body["steps"]),
            step=body["step"],
            weight=body["weight"],
            status=body["status"],
            min_samples_per_step=body["min_samples_per_step"],
            guardrails=list(body["guardrails"]),
            created_at=body["created_at"],
            finished_at=body.get("finished_at"),
            history=[RolloutStep(h["at"], h["step"], h["weight"], h["event"], h["reason"]) for h in body["history"]],
        )


class RolloutsMixin:
    config: ClientConfig

    def _rollouts_path(self, name: str, *rest: str) -> str:
        return "/".join((f"/api/v1/prompts/{quote(name, safe='')}/rollouts", *rest))

    def _registry(self, method: str, path: str, body: Any = None) -> Any:
        return call(method, self.config.registry_url, path, self.config.secret_key, body)

    def start_rollout(
        self,
        name: str,
        to_version: int,
        label: str = "production",
        steps: Sequence[int] = (5, 25, 50, 100),
        min_samples_per_step: int = 200,
        guardrails: Sequence[str] = ("latency_ms", "error_rate"),
    ) -> Rollout:
        """Move `label` to `to_version` step by step; it rolls back by itself when a guardrail regresses."""
        request = {
            "label": label,
            "to_version": to_version,
            "steps": list(steps),
            "min_samples_per_step": min_samples_per_step,
            "guardrails": list(guardrails),
        }
        return Rollout.of(self._registry("POST", self._rollouts_path(name), request))

    def rollout(self, name: str, rollout_id: str) -> Rollout:
        return Rollout.of(self._registry("GET", self._rollouts_path(name, quote(rollout_id, safe=""))))

    def rollouts(self, name: str) -> list[Rollout]:
        """The prompt's rollouts, newest first."""
        return [Rollout.of(r) for r in self._registry("GET", self._rollouts_path(name))["rollouts"]]

    def abort_rollout(self, name: str, rollout_id: str) -> Rollout:
        """Put the label back on the rollout's from_version alone."""
        path = self._rollouts_path(name, quote(rollout_id, safe=""), "abort")
        return Rollout.of(self._registry("POST", path))
