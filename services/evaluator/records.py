"""The ledger of evaluations in Postgres: what was scored (or failed), keyed by score_id.

A span's outcomes are recorded before its scores are published and it is acked; a redelivery
reads them back and republishes instead of evaluating (and paying a judge) again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.evaluator.outcomes import Outcome
from services.evaluator.selection import Planned
from services.evaluator.spans import SpanView

_COLUMNS = (
    "score_id, project_id, trace_id, span_id, name, evaluator, evaluator_version, status, value, string_value, "
    "data_type, comment, eval_cost, judge_input_tokens, judge_output_tokens, rule_id, origin, app_version, "
    "prompt_name, prompt_version, attempts, created_at"
)


@dataclass(frozen=True)
class Evaluation:
    """One ledger row: what a score on the scores stream is made of."""

    score_id: uuid.UUID
    project_id: uuid.UUID
    trace_id: bytes
    span_id: bytes
    name: str
    evaluator: str
    evaluator_version: str
    status: str  # ok or error
    value: float | None
    string_value: str
    data_type: str
    comment: str
    eval_cost: float | None
    judge_input_tokens: int | None
    judge_output_tokens: int | None
    rule_id: uuid.UUID | None
    origin: str
    app_version: str
    prompt_name: str
    prompt_version: int
    attempts: int
    created_at: datetime

    @classmethod
    def of(cls, span: SpanView, planned: Planned, outcome: Outcome) -> Evaluation:
        return cls(
            score_id=planned.score_id(span),
            project_id=span.project_uuid,
            trace_id=span.trace_id,
            span_id=span.span_id,
            name=planned.name,
            evaluator=planned.spec.name,
            evaluator_version=planned.spec.version,
            status="ok" if outcome.ok else "error",
            value=outcome.value if outcome.ok else None,
            string_value=outcome.string_value,
            data_type=planned.spec.output,
            comment=(outcome.explanation if outcome.ok else outcome.error or "")[:4000],
            eval_cost=outcome.cost,
            judge_input_tokens=outcome.input_tokens,
            judge_output_tokens=outcome.output_tokens,
            rule_id=planned.rule_id,
            origin=planned.origin,
            app_version=span.app_version,
            prompt_name=span.prompt_name,
            prompt_version=span.prompt_version,
            attempts=outcome.attempts,
            created_at=datetime.now(UTC),
        )

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Evaluation:
        values: dict[str, Any] = {k: bytes(v) if isinstance(v, memoryview) else v for k, v in dict(row).items()}
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        """The API's view of the row."""
        return {
            "score_id": str(self.score_id),
            "trace_id": self.trace_id.hex(),
            "span_id": self.span_id.hex(),
            "name": self.name,
            "evaluator": self.evaluator,
            "evaluator_version": self.evaluator_version,
            "status": self.status,
            "value": self.value,
            "string_value": self.string_value,
            "data_type": self.data_type,
            "comment": self.comment,
            "eval_cost": self.eval_cost,
            "judge_input_tokens": self.judge_input_tokens,
            "judge_output_tokens": self.judge_output_tokens,
            "rule_id": str(self.rule_id) if self.rule_id else None,
            "origin": self.origin,
            "app_version": self.app_version,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
        }


async def recorded(pool: asyncpg.Pool, score_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Evaluation]:
    """The evaluations already in the ledger among these ids."""
    if not score_ids:
        return {}
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM evaluations WHERE score_id = ANY($1::uuid[])", list(score_ids))
    return {row["score_id"]: Evaluation.from_row(row) for row in rows}


_TYPES = (
    "uuid", "uuid", "bytea", "bytea", "text", "text", "text", "text", "float8", "text", "text", "text", "float8",
    "int8", "int8", "uuid", "text", "text", "text", "int4", "int4", "timestamptz",
)  # fmt: skip
_NAMES = [name.strip() for name in _COLUMNS.split(",")]
_UNNEST = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_TYPES))


async def record(pool: asyncpg.Pool, evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """Store the evaluations; where a row already exists (a concurrent delivery won), return the stored one."""
    if not evaluations:
        return []
    columns = [[getattr(e, name) for e in evaluations] for name in _NAMES]  # astuple deep-copies: slow
    rows = await pool.fetch(
        f"""INSERT INTO evaluations ({_COLUMNS})
            SELECT * FROM unnest({_UNNEST})
            ON CONFLICT (score_id) DO UPDATE SET attempts = evaluations.attempts
            RETURNING {_COLUMNS}""",
        *columns,
    )
    return [Evaluation.from_row(row) for row in rows]


async def listing(
    pool: asyncpg.Pool,
    project_id: uuid.UUID,
    status: str | None = None,
    evaluator: str | None = None,
    name: str | None = None,
    limit: int = 100,
    before: datetime | None = None,
) -> list[Evaluation]:
    """A project's evaluations, newest first, optionally only errors (status=error) or one evaluator."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM evaluations
            WHERE project_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR evaluator = $3)
              AND ($4::text IS NULL OR name = $4) AND ($5::timestamptz IS NULL OR created_at < $5)
            ORDER BY created_at DESC, score_id LIMIT $6""",
        project_id,
        status,
        evaluator,
        name,
        before,
        limit,
    )
    return [Evaluation.from_row(row) for row in rows]
