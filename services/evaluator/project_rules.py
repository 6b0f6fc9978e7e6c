"""A project's evaluator rules: their validation, their table, and a short-lived copy per process."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from services.common.catalogue import CATALOGUE
from services.common.errors import Conflict, Invalid, NotFound
from services.evaluator.outcomes import EvaluationFailed
from services.evaluator.rubrics import RUBRICS
from services.evaluator.rules import RULES
from services.evaluator.selection import FILTER_KEYS, ProjectRule

_SELECT = "SELECT id, name, evaluator, filter, mapping, sampling_rate, config, enabled, created_at, updated_at"
SECRET_CONFIG_KEYS = ("api_key",)


def validate(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's fields checked against the catalogue; Invalid with the reason otherwise."""
    evaluator = fields.get("evaluator")
    if evaluator not in CATALOGUE:
        raise Invalid(f"unknown evaluator {evaluator!r}", {"known": sorted(CATALOGUE)})
    spec = CATALOGUE[str(evaluator)]
    name = str(fields.get("name") or evaluator).strip()
    if not 0 < len(name) <= 200:
        raise Invalid("name must be 1 to 200 characters")
    span_filter = dict(fields.get("filter") or {})
    unknown = set(span_filter) - set(FILTER_KEYS)
    if unknown:
        raise Invalid(f"unknown filter keys {sorted(unknown)}", {"allowed": list(FILTER_KEYS)})
    for key, value in span_filter.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise Invalid(f"filter.{key} must be a string or a list of strings")
    mapping = dict(fields.get("mapping") or {})
    for key, path in mapping.items():
        if key not in spec.inputs:
            raise Invalid(f"{evaluator} has no input {key!r}", {"inputs": list(spec.inputs)})
        if not isinstance(path, str) or not path:
            raise Invalid(f"mapping.{key} must be a span path such as output.value")
    rate = fields.get("sampling_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise Invalid("sampling_rate must be a number from 0 to 1")
    config = fields.get("config") or {}
    if not isinstance(config, Mapping):
        raise Invalid("config must be a JSON object")
    _check_config(str(evaluator), config)
    enabled = fields.get("enabled", True)
    return {
        "name": name,
        "evaluator": evaluator,
        "filter": span_filter,
        "mapping": mapping,
        "sampling_rate": float(rate),
        "config": dict(config),
        "enabled": bool(enabled),
    }


def _check_config(evaluator: str, config: Mapping[str, Any]) -> None:
    # A dry run on empty text finds a config that can never work (no pattern, broken schema).
    if evaluator in RULES:
        try:
            RULES[evaluator]({"output": "", "reference": ""}, config)
        except EvaluationFailed as exc:
            raise Invalid(str(exc)) from None
    if evaluator == "llm_judge" and not config.get("prompt") and config.get("rubric", "relevance") not in RUBRICS:
        raise Invalid(f"unknown rubric {config.get('rubric')!r}", {"rubrics": sorted(RUBRICS)})


def as_json(row: asyncpg.Record) -> dict[str, Any]:
    """A rule for the API, with secrets in its config masked."""
    config = dict(_decode(row["config"]))
    for key in SECRET_CONFIG_KEYS:
        if key in config:
            config[key] = "***"
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "evaluator": row["evaluator"],
        "evaluator_version": CATALOGUE[row["evaluator"]].version if row["evaluator"] in CATALOGUE else None,
        "filter": _decode(row["filter"]),
        "mapping": _decode(row["mapping"]),
        "sampling_rate": row["sampling_rate"],
        "config": config,
        "enabled": row["enabled"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rule(row: asyncpg.Record) -> ProjectRule:
    return ProjectRule(
        id=row["id"],
        name=row["name"],
        evaluator=row["evaluator"],
        filter=_decode(row["filter"]),
        mapping=_decode(row["mapping"]),
        sampling_rate=row["sampling_rate"],
        config=_decode(row["config"]),
        enabled=row["enabled"],
    )


def _stored_fields(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    """A validated rule's columns in the order INSERT and UPDATE bind them (name … enabled)."""
    return (
        rule["name"],
        rule["evaluator"],
        json.dumps(rule["filter"]),
        json.dumps(rule["mapping"]),
        rule["sampling_rate"],
        json.dumps(rule["config"]),
        rule["enabled"],
    )


async def create(pool: asyncpg.Pool, project_id: uuid.UUID, fields: Mapping[str, Any]) -> asyncpg.Record:
    rule = validate(fields)
    try:
        row = await pool.fetchrow(
            f"""INSERT INTO evaluator_rules (id, project_id, name, evaluator, filter, mapping, sampling_rate, config,
                                             enabled)
                VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8::jsonb, $9)
                RETURNING {_SELECT[len("SELECT ") :]}""",
            uuid.uuid4(),
            project_id,
            *_stored_fields(rule),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"an evaluator rule named {rule['name']!r} exists already") from None
    assert row is not None  # INSERT … RETURNING returns the row
    return row


async def get(pool: asyncpg.Pool, project_id: uuid.UUID, rule_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow(f"{_SELECT} FROM evaluator_rules WHERE id = $1 AND project_id = $2", rule_id, project_id)
    if row is None:
        raise NotFound(f"evaluator rule {rule_id} not found")
    return row


async def list_all(pool: asyncpg.Pool, project_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(f"{_SELECT} FROM evaluator_rules WHERE project_id = $1 ORDER BY created_at", project_id)
    )


async def update(
    pool: asyncpg.Pool, project_id: uuid.UUID, rule_id: uuid.UUID, changes: Mapping[str, Any]
) -> asyncpg.Record:
    """Apply a partial update (any of the rule's fields; enabled=false disables it)."""
    row = await get(pool, project_id, rule_id)
    stored = _decode(row["config"])
    current = {k: row[k] for k in ("name", "evaluator", "sampling_rate", "enabled")}
    current.update(filter=_decode(row["filter"]), mapping=_decode(row["mapping"]))
    if isinstance(changes.get("config"), Mapping):  # a masked secret sent back keeps the stored one
        changes = {**changes, "config": {k: stored.get(k) if v == "***" else v for k, v in changes["config"].items()}}
    rule = validate({**current, "config": stored, **changes})
    try:
        updated = await pool.fetchrow(
            f"""UPDATE evaluator_rules SET name = $3, evaluator = $4, filter = $5::jsonb, mapping = $6::jsonb,
                       sampling_rate = $7, config = $8::jsonb, enabled = $9, updated_at = now()
                WHERE id = $1 AND project_id = $2
                RETURNING {_SELECT[len("SELECT ") :]}""",
            rule_id,
            project_id,
            *_stored_fields(rule),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"an evaluator rule named {rule['name']!r} exists already") from None
    if updated is None:
        raise NotFound(f"evaluator rule {rule_id} not found")
    return updated


async def delete(pool: asyncpg.Pool, project_id: uuid.UUID, rule_id: uuid.UUID) -> None:
    result = await pool.execute("DELETE FROM evaluator_rules WHERE id = $1 AND project_id = $2", rule_id, project_id)
    if result.endswith(" 0"):
        raise NotFound(f"evaluator rule {rule_id} not found")


class RuleCache:
    """Each project's enabled rules, re-read when older than `ttl` (other replicas' edits show up then)."""

    def __init__(self, pool: asyncpg.Pool, ttl_seconds: float) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._rules: dict[str, tuple[float, list[ProjectRule]]] = {}

    async def rules_for(self, project_id: str) -> list[ProjectRule]:
        cached = self._rules.get(project_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        rows = await self._pool.fetch(
            f"{_SELECT} FROM evaluator_rules WHERE project_id = $1 AND enabled ORDER BY created_at",
            uuid.UUID(project_id),
        )
        rules = [_rule(row) for row in rows]
        self._rules[project_id] = (now, rules)
        return rules

    def forget(self, project_id: str) -> None:
        self._rules.pop(project_id, None)
