"""Datasets over HTTP: /api/v1/datasets, their items and their runs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter

from services.aggregator import datasets
from services.common.errors import Invalid

Body = dict[str, Any]


class DatasetController(Controller):
    path = "/api/v1/datasets"
    tags = ["datasets"]

    @post("/", status_code=201)
    async def create_dataset(self, pool: asyncpg.Pool, project_id: uuid.UUID, request: Request[Any, Any, Any]) -> Body:
        try:
            body = msgspec.json.decode(await request.body(), type=datasets.DatasetIn)
        except msgspec.ValidationError as exc:
            raise Invalid(f'send {{"name", "description"?}}: {exc}') from None
        except msgspec.DecodeError as exc:
            raise Invalid(f"the body is not JSON: {exc}") from None
        return await datasets.create(pool, project_id, body)

    @get("/")
    async def list_datasets(self, pool: asyncpg.Pool, project_id: uuid.UUID) -> Body:
        return await datasets.list_all(pool, project_id)

    @post("/{name:str}/items", status_code=201)
    async def add_items(
        self, pool: asyncpg.Pool, project_id: uuid.UUID, name: str, request: Request[Any, Any, Any]
    ) -> Body:
        """A list of items (an item whose id exists becomes its next version), or {"from_runs": {"trace_ids"}}."""
        return await datasets.add_items(pool, project_id, name, datasets.parse_items(await request.body()))

    @get("/{name:str}/items")
    async def list_items(
        self,
        pool: asyncpg.Pool,
        project_id: uuid.UUID,
        name: str,
        not_run_by: Annotated[
            str | None, Parameter(description="only items this app version has not run yet (a resumed run)")
        ] = None,
    ) -> Body:
        return await datasets.list_items(pool, project_id, name, not_run_by)

    @get("/{name:str}/runs")
    async def list_runs(self, pool: asyncpg.Pool, project_id: uuid.UUID, name: str) -> Body:
        """Each app version's run over the dataset, with its aggregate scores."""
        return await datasets.runs(pool, project_id, name)
