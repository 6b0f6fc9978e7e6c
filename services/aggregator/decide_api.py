"""The deciding API: compare two versions with statistics, and choose a winner among many."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from services.aggregator import compare, paired_compare, winner
from services.aggregator.api import From, Label, Model, ProjectName, To
from services.aggregator.bodies import json_response
from services.aggregator.decide_bodies import ComparisonBody, WinnerBody
from services.aggregator.query import Filters, moment
from services.common.errors import Invalid


class DecideController(Controller):
    path = "/api/v1"
    tags = ["deciding"]

    @get("/compare")
    async def compare_versions(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        a: Annotated[str, Parameter(description="version a: a prompt version number, or an app version name")],
        b: Annotated[str, Parameter(description="version b, compared against a")],
        start: From,
        end: To,
        model: Model,
        label: Label,
        kind: Annotated[str, Parameter(description="prompt or app")] = "prompt",
        name: Annotated[str | None, Parameter(description="the prompt's name (kind=prompt)")] = None,
        project_name: ProjectName = None,
        alpha: Annotated[float, Parameter(description="family-wise error rate (Holm)")] = 0.05,
        dataset: Annotated[
            str | None, Parameter(description="pair the two app versions' runs of this dataset's items")
        ] = None,
    ) -> Response[ComparisonBody]:
        """b against a on every metric: estimates, difference, 95% interval, p-value, test and verdict."""
        if dataset is not None:
            if not 0 < alpha < 1:
                raise Invalid(f"alpha must be between 0 and 1, got {alpha}")
            return json_response(await paired_compare.compare_by_item(pool, project_id, kind, dataset, a, b, alpha))
        filters = Filters(start, end, model, label, project_name)
        return json_response(await compare.compare(pool, project_id, kind, name, a, b, filters, alpha))

    @post("/winner", status_code=200)
    async def choose_winner(
        self, pool: asyncpg.Pool, project_id: uuid.UUID, request: Request[Any, Any, Any]
    ) -> Response[WinnerBody]:
        """Versions ranked by their weighted, normalised metrics; a winner only when the top two are
        significantly apart on a weighted metric."""
        try:
            body = msgspec.json.decode(await request.body(), type=winner.WinnerRequest)
        except msgspec.ValidationError as exc:
            raise Invalid(f"invalid winner request: {exc}") from None
        except msgspec.DecodeError as exc:
            raise Invalid(f"the body is not JSON: {exc}") from None
        filters = Filters(moment(body.from_, "from"), moment(body.to, "to"), body.model, body.label, body.project_name)
        return json_response(await winner.winner(pool, project_id, body, filters))
