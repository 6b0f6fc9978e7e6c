"""Experiments and regressions over HTTP: /api/v1/experiments and /api/v1/regressions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import httpx
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from services.aggregator import experiments, regressions
from services.aggregator.api import From, To
from services.common.errors import Invalid, VaneError
from services.common.logs import get_logger

log = get_logger(component="experiments")
Body = dict[str, Any]


class RegistryUnavailable(VaneError):
    status = 503
    code = "unavailable"


class RegistryLink:
    """The registry's HTTP API, asked with the caller's own key (the aggregator holds none)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    async def move_label(self, request: Request[Any, Any, Any], prompt: str, label: str, version: int) -> None:
        """Point the label at one version alone (promote), as PUT …/labels/{label} does."""
        auth = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "x-api-key", "x-secret-key")}
        path = f"/api/v1/prompts/{prompt}/labels/{label}"
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                r = await http.put(self.url + path, json={"split": [{"version": version, "weight": 100}]}, headers=auth)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"the registry at {self.url} is unreachable: {exc}") from None
        if r.status_code >= 400:
            raise RegistryUnavailable(f"the registry refused to move {label!r} to version {version}: {r.text}")


def _decode(raw: bytes, kind: type[Any], what: str) -> Any:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from None


class ExperimentController(Controller):
    path = "/api/v1"
    tags = ["experiments"]

    @post("/experiments", status_code=201)
    async def create_experiment(
        self, pool: asyncpg.Pool, project_id: uuid.UUID, request: Request[Any, Any, Any]
    ) -> Body:
        """An experiment on a label that splits traffic: its arms are the split's versions and weights."""
        body = _decode(await request.body(), experiments.ExperimentIn, "experiment")
        return await experiments.create(pool, project_id, body)

    @get("/experiments")
    async def list_experiments(self, pool: asyncpg.Pool, project_id: uuid.UUID) -> Body:
        return await experiments.list_all(pool, project_id)

    @get("/experiments/{experiment_id:str}")
    async def show_experiment(self, pool: asyncpg.Pool, project_id: uuid.UUID, experiment_id: str) -> Body:
        """Arms, sample-ratio check, primary metric (probability best, anytime-valid intervals), guardrails."""
        return await experiments.get(pool, project_id, experiment_id)

    @post("/experiments/{experiment_id:str}/stop", status_code=200)
    async def stop_experiment(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        experiment_id: str,
        request: Request[Any, Any, Any],
        registry: RegistryLink,
    ) -> Body:
        """Stop with a decision; promote moves the label onto the version alone."""
        body = _decode(await request.body(), experiments.StopIn, "stop request")

        async def promote(prompt: str, label: str, version: int) -> None:
            await registry.move_label(request, prompt, label, version)
            log.info("experiment_promoted", prompt=prompt, label=label, version=version)

        return await experiments.stop(pool, project_id, experiment_id, body, promote)

    @get("/regressions")
    async def list_regressions(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        start: From,
        end: To,
        prompt: Annotated[str | None, Parameter(description="only this prompt's regressions")] = None,
    ) -> Response[Body]:
        """Significant worsenings found after label moves, newest first."""
        return Response(await regressions.listed(pool, project_id, prompt, start, end))
