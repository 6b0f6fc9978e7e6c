"""Guarded rollouts over HTTP (port 8081): start one on a prompt's label, read them, abort one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, post
from litestar import get as get_route
from litestar.status_codes import HTTP_201_CREATED

from services.common.errors import Invalid, NotFound
from services.registry import rollout_store
from services.registry.keys import Callers
from services.registry.registry import PromptRegistry, from_store
from services.registry.rollout_worker import announce
from services.registry.rollouts import StartRequest, check_start, iso


class HistoryBody(msgspec.Struct, kw_only=True):
    at: str
    step: int  # index into steps
    weight: int  # to_version's weight from this moment
    event: Literal["started", "advanced", "completed", "rolled_back", "aborted"]
    reason: str


class RolloutBody(msgspec.Struct, kw_only=True):
    id: str
    prompt: str
    label: str
    from_version: int
    to_version: int
    steps: list[int]
    step: int  # index into steps of the current (or last) step
    weight: int  # to_version's weight now
    status: Literal["running", "completed", "rolled_back", "aborted"]
    min_samples_per_step: int
    guardrails: list[str]
    created_by: str
    created_at: str
    finished_at: str | None
    history: list[HistoryBody]


class RolloutList(msgspec.Struct):
    rollouts: list[RolloutBody]


def _body(stored: rollout_store.StoredRollout) -> RolloutBody:
    r = stored.rollout
    return RolloutBody(
        id=str(r.id),
        prompt=r.prompt,
        label=r.label,
        from_version=r.from_version,
        to_version=r.to_version,
        steps=list(r.steps),
        step=r.step,
        weight=r.weight,
        status=r.status,
        min_samples_per_step=r.min_samples_per_step,
        guardrails=list(r.guardrails),
        created_by=stored.created_by,
        created_at=iso(stored.created_at),
        finished_at=iso(stored.finished_at) if stored.finished_at else None,
        history=[
            HistoryBody(at=iso(h.at), step=h.step, weight=h.weight, event=h.event, reason=h.reason)
            for h in stored.history
        ],
    )


def _rollout_id(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"prompt {name!r} has no rollout {value!r}") from None


async def _start_request(request: Request[Any, Any, Any]) -> StartRequest:
    try:
        return msgspec.json.decode(await request.body(), type=StartRequest)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid rollout: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from None


class RolloutController(Controller):
    path = "/api/v1/prompts/{name:str}/rollouts"
    tags = ["rollouts"]

    @post("/", status_code=HTTP_201_CREATED)
    async def start(
        self,
        name: str,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        callers: Callers,
        request: Request[Any, Any, Any],
    ) -> RolloutBody:
        """Start moving a label to `to_version` step by step, guarded by the metrics in `guardrails`."""
        plan = check_start(await _start_request(request))
        by = await callers.writer(request.headers)
        rollout, move = await from_store(
            rollout_store.start(registry.pool, project_id, name, plan, by, datetime.now(UTC))
        )
        await from_store(announce(registry, rollout, move))
        return _body(await from_store(rollout_store.get(registry.pool, project_id, name, rollout.id)))

    @get_route("/")
    async def list_rollouts(self, name: str, project_id: uuid.UUID, registry: PromptRegistry) -> RolloutList:
        """The prompt's rollouts, newest first, each with its history."""
        stored = await from_store(rollout_store.list_rollouts(registry.pool, project_id, name))
        return RolloutList([_body(s) for s in stored])

    @get_route("/{rollout_id:str}")
    async def get_rollout(
        self, name: str, rollout_id: str, project_id: uuid.UUID, registry: PromptRegistry
    ) -> RolloutBody:
        found = await from_store(rollout_store.get(registry.pool, project_id, name, _rollout_id(rollout_id, name)))
        return _body(found)

    @post("/{rollout_id:str}/abort", status_code=200)
    async def abort(
        self,
        name: str,
        rollout_id: str,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        callers: Callers,
        request: Request[Any, Any, Any],
    ) -> RolloutBody:
        """Put the label back on from_version alone; 409 when the rollout is no longer running."""
        ident = _rollout_id(rollout_id, name)
        by = await callers.writer(request.headers)
        move = await from_store(rollout_store.abort(registry.pool, project_id, name, ident, by, datetime.now(UTC)))
        stored = await from_store(rollout_store.get(registry.pool, project_id, name, ident))
        await from_store(announce(registry, stored.rollout, move))
        return _body(stored)
