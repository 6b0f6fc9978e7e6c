"""Langfuse's prompt API (`/api/public/v2/prompts`), in Langfuse's own request and response shapes,
answered from Vane's registry: Langfuse's SDK (`get_prompt`, `create_prompt`, `update_prompt`)
works unchanged with its base URL at Vane.

A Langfuse prompt is a Vane prompt version: the same name, version, type, body, config, labels and
tags; `commitMessage` is Vane's commit message. The SDK's cache and fallback are its own, client side.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.status_codes import HTTP_200_OK
from vane.v1 import prompts_pb2 as pb

from services.common.errors import Invalid
from services.registry import rules
from services.registry.keys import Callers
from services.registry.registry import PromptRegistry
from services.registry.resolution import version_json

_LIST_LIMIT = 50  # Langfuse's default page size


class LangfusePrompt(msgspec.Struct, rename="camel"):
    """Langfuse's `Prompt` (text or chat): what `GET /api/public/v2/prompts/{name}` answers."""

    name: str
    version: int
    type: Literal["text", "chat"]
    prompt: str | list[dict[str, str]]
    config: dict[str, Any]
    labels: list[str]
    tags: list[str]
    commit_message: str | None
    created_at: str
    updated_at: str
    resolution_graph: dict[str, Any] | None = None


class CreatePrompt(msgspec.Struct, rename="camel"):
    """Langfuse's `CreatePromptRequest`: chat messages may carry `type: "chatmessage"` or be placeholders."""

    name: str
    prompt: str | list[dict[str, Any]]
    type: Literal["text", "chat"] | None = None
    config: dict[str, Any] | None = None
    labels: list[str] | None = None
    tags: list[str] | None = None
    commit_message: str | None = None


class UpdateLabels(msgspec.Struct, rename="camel"):
    new_labels: list[str]


class PromptMeta(msgspec.Struct, rename="camel"):
    name: str
    type: Literal["text", "chat"]
    versions: list[int]
    labels: list[str]
    tags: list[str]
    last_updated_at: str
    last_config: dict[str, Any]


class PageMeta(msgspec.Struct, rename="camel"):
    page: int
    limit: int
    total_items: int
    total_pages: int


class PromptMetaList(msgspec.Struct):
    data: list[PromptMeta]
    meta: PageMeta


def langfuse_prompt(message: pb.PromptVersion) -> LangfusePrompt:
    """A Vane prompt version as Langfuse's SDK reads it (chat messages as `{role, content}`)."""
    body = version_json(message)
    prompt = body["prompt"]
    if body["type"] == "chat":
        prompt = [m if m.get("type") == "placeholder" else {"type": "chatmessage", **m} for m in prompt]
    return LangfusePrompt(
        name=body["name"],
        version=body["version"],
        type=body["type"],
        prompt=prompt,
        config=body["config"],
        labels=body["labels"],
        tags=body["tags"],
        commit_message=body["commit_message"] or None,
        created_at=body["created_at"],
        updated_at=body["created_at"],  # a version is immutable once written
    )


class LangfusePromptController(Controller):
    path = "/api/public/v2/prompts"

    @get("/{name:str}")
    async def get_prompt(
        self,
        name: str,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        label: str | None = None,
        version: int | None = None,
    ) -> LangfusePrompt:
        """One version, by `version` or `label` (`production` when neither is given)."""
        if label and version:
            raise Invalid("ask for a label or a version, not both")
        resolution = await registry.resolve(project_id, name, label, version)
        return langfuse_prompt(resolution.by_version[resolution.pick()])

    @post("/", status_code=HTTP_200_OK)  # Langfuse answers a created prompt with 200
    async def create_prompt(
        self, data: CreatePrompt, project_id: uuid.UUID, registry: PromptRegistry, callers: Callers, request: Request
    ) -> LangfusePrompt:
        """A new version of the prompt (version 1 of a new name), with the labels given."""
        new = rules.new_version(
            data.name, data.type, data.prompt, data.config, data.labels, data.tags, data.commit_message
        )
        created = await registry.create(project_id, new, await callers.writer(request.headers))
        return langfuse_prompt(created)

    @patch("/{name:str}/versions/{version:int}")
    async def update_labels(
        self,
        name: str,
        version: int,
        data: UpdateLabels,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        callers: Callers,
        request: Request,
    ) -> LangfusePrompt:
        """Langfuse's `update_prompt(new_labels=...)`: those labels move onto this version."""
        by = await callers.writer(request.headers)
        return langfuse_prompt(await registry.set_labels(project_id, name, version, data.new_labels, by))

    @get("/")
    async def list_prompts(
        self,
        project_id: uuid.UUID,
        registry: PromptRegistry,
        name: str | None = None,
        label: str | None = None,
        tag: str | None = None,
        page: int = 1,
        limit: int = _LIST_LIMIT,
    ) -> PromptMetaList:
        """The project's prompts, filtered and paged as Langfuse's `prompts.list` asks."""
        if page < 1 or limit < 1:
            raise Invalid("page and limit start at 1")
        found = []
        for prompt_name, kind, versions in await registry.prompts(project_id):
            labels = sorted({x for v in versions for x in v.labels})
            tags = sorted({x for v in versions for x in v.tags})
            if (name and prompt_name != name) or (label and label not in labels) or (tag and tag not in tags):
                continue
            newest = version_json(versions[0])
            found.append(
                PromptMeta(
                    name=prompt_name,
                    type=kind,  # type: ignore[arg-type]
                    versions=sorted(v.version for v in versions),
                    labels=labels,
                    tags=tags,
                    last_updated_at=newest["created_at"],
                    last_config=newest["config"],
                )
            )
        total = len(found)
        return PromptMetaList(
            data=found[(page - 1) * limit : page * limit],
            meta=PageMeta(page=page, limit=limit, total_items=total, total_pages=-(-total // limit)),
        )
