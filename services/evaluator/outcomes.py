"""What an evaluation ends in: a value with its explanation, or a failure with its reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """A finished evaluation. `error` set: it failed and carries no value, only the reason."""

    value: float | None
    string_value: str = ""
    explanation: str = ""
    error: str | None = None
    cost: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def boolean(cls, passed: bool, explanation: str) -> Outcome:
        return cls(1.0 if passed else 0.0, "true" if passed else "false", explanation)

    @classmethod
    def failed(cls, reason: str, attempts: int = 1) -> Outcome:
        return cls(None, error=reason, attempts=attempts)


class EvaluationFailed(Exception):
    """The evaluation cannot succeed as configured or for this span: record the reason, do not retry."""


class JudgeUnavailable(Exception):
    """The judge did not answer usefully after its retries (timeouts, 429, 5xx): worth trying later."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.attempts = attempts
