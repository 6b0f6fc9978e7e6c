"""The evaluator's HTTP API: the catalogue, a project's evaluator rules, and its evaluations."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Response, delete, get, patch, post
from litestar.types import ControllerRouterHandler

from services.common import outbound
from services.common.catalogue import CATALOGUE
from services.common.errors import Invalid
from services.evaluator import project_rules, records
from services.evaluator.project_rules import RuleCache
from services.evaluator.rubrics import RUBRICS

_RULE_FIELDS = {"name", "evaluator", "filter", "mapping", "sampling_rate", "config", "enabled"}


class RuleCreate(msgspec.Struct, forbid_unknown_fields=True):
    """An evaluator rule: which evaluator scores which of the project's spans, and how."""

    evaluator: str
    name: str | None = None  # the score's name; the evaluator's name when absent
    filter: dict[str, Any] = msgspec.field(default_factory=dict)  # app_version, prompt_name, prompt_label, ...
    mapping: dict[str, str] = msgspec.field(default_factory=dict)  # evaluator input -> span path
    sampling_rate: float = 1.0
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    enabled: bool = True


def catalogue_body() -> dict[str, Any]:
    evaluators = []
    for spec in CATALOGUE.values():
        body = asdict(spec)
        body["range"] = list(spec.range) if spec.range else None
        evaluators.append(body)
    return {"evaluators": evaluators, "rubrics": sorted(RUBRICS)}


async def _check_judge_url(config: object) -> None:
    """A judge base_url that points inside (metadata, link-local, private when refused) is a 400."""
    if isinstance(config, dict) and config.get("base_url"):
        await outbound.check_urls([str(config["base_url"])])


def evaluator_routes(pool: asyncpg.Pool, rules: RuleCache) -> list[ControllerRouterHandler]:
    @get("/api/v1/evaluators/catalogue", sync_to_thread=False)
    def catalogue(project_id: uuid.UUID) -> dict[str, Any]:
        """Every evaluator Vane runs: name, version, output type, inputs, config keys."""
        return catalogue_body()

    @get("/api/v1/evaluators")
    async def list_rules(project_id: uuid.UUID) -> dict[str, Any]:
        """The project's evaluator rules, enabled or not."""
        return {"evaluators": [project_rules.as_json(r) for r in await project_rules.list_all(pool, project_id)]}

    @post("/api/v1/evaluators")
    async def create_rule(project_id: uuid.UUID, data: RuleCreate) -> dict[str, Any]:
        """Create a rule: from now on, matching spans are scored (at the sampling rate)."""
        await _check_judge_url(data.config)
        row = await project_rules.create(pool, project_id, msgspec.structs.asdict(data))
        rules.forget(str(project_id))
        return project_rules.as_json(row)

    @get("/api/v1/evaluators/{rule_id:uuid}")
    async def get_rule(project_id: uuid.UUID, rule_id: uuid.UUID) -> dict[str, Any]:
        return project_rules.as_json(await project_rules.get(pool, project_id, rule_id))

    @patch("/api/v1/evaluators/{rule_id:uuid}")
    async def update_rule(project_id: uuid.UUID, rule_id: uuid.UUID, data: dict[str, Any]) -> dict[str, Any]:
        """Change any of a rule's fields; `{"enabled": false}` disables it."""
        unknown = set(data) - _RULE_FIELDS
        if unknown:
            raise Invalid(f"unknown fields {sorted(unknown)}", {"allowed": sorted(_RULE_FIELDS)})
        await _check_judge_url(data.get("config"))
        row = await project_rules.update(pool, project_id, rule_id, data)
        rules.forget(str(project_id))
        return project_rules.as_json(row)

    @delete("/api/v1/evaluators/{rule_id:uuid}", status_code=204)
    async def delete_rule(project_id: uuid.UUID, rule_id: uuid.UUID) -> None:
        await project_rules.delete(pool, project_id, rule_id)
        rules.forget(str(project_id))

    @get("/api/v1/evaluations")
    async def list_evaluations(
        project_id: uuid.UUID,
        status: str | None = None,
        evaluator: str | None = None,
        name: str | None = None,
        limit: int = 100,
        before: datetime | None = None,
    ) -> dict[str, Any]:
        """The project's evaluations, newest first; `status=error` lists the failures with their reasons."""
        if status not in (None, "ok", "error"):
            raise Invalid("status must be ok or error")
        if not 1 <= limit <= 1000:
            raise Invalid("limit must be from 1 to 1000")
        found = await records.listing(pool, project_id, status, evaluator, name, limit, before)
        body: dict[str, Any] = {"evaluations": [e.as_json() for e in found]}
        if len(found) == limit:
            body["next_before"] = found[-1].created_at.isoformat()
        return body

    @get("/api/v1/evaluations/errors")
    async def list_errors(project_id: uuid.UUID, limit: int = 100) -> Response[dict[str, Any]]:
        """The project's failed evaluations (the same as status=error)."""
        found = await records.listing(pool, project_id, "error", None, None, max(1, min(limit, 1000)))
        return Response({"evaluations": [e.as_json() for e in found]})

    return [
        catalogue,
        list_rules,
        create_rule,
        get_rule,
        update_rule,
        delete_rule,
        list_evaluations,
        list_errors,
    ]
