"""The registry's HTTP API (JSON on port 8081), as docs/reference.md lists it, with label splits and rollback."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from services.common.errors import Invalid
from services.registry import rules
from services.registry.diff import diff_versions
from services.registry.keys import Callers
from services.registry.registry import PromptRegistry
from services.registry.resolution import version_json

Body = dict[str, Any]


def _split_json(weights: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> list[dict[str, int]]:
    return [{"version": v, "weight": w} for v, w in weights]


class PromptController(Controller):
    path = "/api/v1/prompts"

    @post("/", status_code=HTTP_201_CREATED)
    async def create(
        self, data: Body, project_id: uuid.UUID, registry: PromptRegistry, callers: Callers, request: Request
    ) -> Body:
        new = rules.new_version(
            data.get("name"),
            data.get("type"),
            data.get("prompt"),
            data.get("config"),
            data.get("labels"),
            data.get("tags"),
            data.get("commit_message"),
        )
        return version_json(await registry.create(project_id, new, await callers.writer(request.headers)))

    @get("/")
    async def list_prompts(self, project_id: uuid.UUID, registry: PromptRegistry) -> Body:
        prompts = []
        for name, kind, versions in await registry.prompts(project_id):
            prompts.append(
                {
                    "name": name,
                    "type": kind,
                    "latest_version": versions[0].version,
                    "labels": sorted({label for v in versions for label in v.labels}),
                    "tags": sorted({tag for v in versions for tag in v.tags}),
                    "versions": [{"version": v.version, "labels": list(v.labels)} for v in versions],
                }
            )
        return {"prompts": prompts}

    @get("/{name:str}")
    async def get_prompt(
        self,
        name: str,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        label: str | None = None,
        version: int | None = None,
        sticky_key: str | None = None,
    ) -> Body:
        if label and version:
            raise Invalid("ask for a label or a version, not both")
        resolution = await registry.resolve(project_id, name, label, version)
        served = resolution.pick(sticky_key)
        body = version_json(resolution.by_version[served])
        body["resolved_label"] = resolution.label
        if len(resolution.weights) > 1:
            body["split"] = _split_json(resolution.weights)
        return body

    @get("/{name:str}/versions")
    async def versions(self, name: str, project_id: uuid.UUID, registry: PromptRegistry) -> Body:
        return {"name": name, "versions": [version_json(v) for v in await registry.versions(project_id, name)]}

    @patch("/{name:str}/versions/{version:int}")
    async def move_labels(
        self,
        name: str,
        version: int,
        data: Body,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        callers: Callers,
        request: Request,
    ) -> Body:
        labels = data.get("labels")
        if not isinstance(labels, list):
            raise Invalid('send {"labels": [...]}: the labels to move onto this version')
        by = await callers.writer(request.headers)
        return version_json(await registry.set_labels(project_id, name, version, labels, by))

    @delete("/{name:str}/versions/{version:int}", status_code=HTTP_204_NO_CONTENT)
    async def delete_version(
        self,
        name: str,
        version: int,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        callers: Callers,
        request: Request,
    ) -> None:
        await registry.delete_version(project_id, name, version, await callers.writer(request.headers))

    @get("/{name:str}/diff")
    async def diff(
        self,
        name: str,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        from_version: int = Parameter(query="from"),
        to_version: int = Parameter(query="to"),
    ) -> Body:
        old = version_json(await registry.version(project_id, name, from_version))
        new = version_json(await registry.version(project_id, name, to_version))
        return diff_versions(old, new)

    @get("/{name:str}/label-history")
    async def label_history(self, name: str, project_id: uuid.UUID, registry: PromptRegistry) -> Body:
        return {"name": name, "history": await registry.history(project_id, name)}

    @get("/{name:str}/labels")
    async def labels(self, name: str, project_id: uuid.UUID, registry: PromptRegistry) -> Body:
        return {"name": name, "labels": await registry.allocations(project_id, name)}

    @put("/{name:str}/labels/{label:str}")
    async def set_split(
        self,
        name: str,
        label: str,
        data: Body,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        callers: Callers,
        request: Request,
    ) -> Body:
        split = data.get("split")
        if not isinstance(split, list) or not all(isinstance(x, dict) for x in split):
            raise Invalid('send {"split": [{"version": 2, "weight": 90}, {"version": 3, "weight": 10}]}')
        weights = [(x.get("version"), x.get("weight")) for x in split]
        resolution = await registry.set_split(project_id, name, label, weights, await callers.writer(request.headers))
        return {"name": name, "label": label, "split": _split_json(resolution.weights)}

    @delete("/{name:str}/labels/{label:str}", status_code=HTTP_204_NO_CONTENT)
    async def remove_label(
        self, name: str, label: str, project_id: uuid.UUID, registry: PromptRegistry, callers: Callers, request: Request
    ) -> None:
        await registry.remove_label(project_id, name, label, await callers.writer(request.headers))

    @post("/{name:str}/labels/{label:str}/rollback")
    async def rollback(
        self, name: str, label: str, project_id: uuid.UUID, registry: PromptRegistry, callers: Callers, request: Request
    ) -> Response[Body]:
        move = await registry.rollback(project_id, name, label, await callers.writer(request.headers))
        body = {"name": name, "label": label, "from": _split_json(move.before), "to": _split_json(move.after)}
        return Response(body, status_code=200)
