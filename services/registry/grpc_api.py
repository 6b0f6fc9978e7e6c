"""The registry's gRPC API, `vane.v1.PromptService` on port 50051.

GetPrompt is the hot path: its answers are cached as wire bytes, so the handler is registered
with no response serializer and returns those bytes as they are, and a caller's project is
remembered by its credential headers. What remains is grpcio's own per-call work (the handler is
about 2% of a call's CPU in a profile), so throughput grows with processes: VANE_REGISTRY_WORKERS.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from vane.v1 import prompts_pb2 as pb

from services.common.errors import Invalid, VaneError
from services.registry import rules
from services.registry.changes import CLOSING, WATCHING, Watchers
from services.registry.keys import Callers
from services.registry.registry import PromptRegistry

SERVICE = "vane.v1.PromptService"
Context = grpc.aio.ServicerContext[Any, Any]
Req = TypeVar("Req")
Resp = TypeVar("Resp")

STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


def _headers(context: Context) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def _answering(
    handler: Callable[[Any, Req, Context], Awaitable[Resp]],
) -> Callable[[Any, Req, Context], Awaitable[Resp]]:
    """Typed errors become gRPC status codes with the JSON error body as details."""

    async def run(self: Any, request: Req, context: Context) -> Resp:
        try:
            return await handler(self, request, context)
        except VaneError as exc:
            await context.abort(STATUS.get(exc.status, grpc.StatusCode.INTERNAL), json.dumps(exc.body()))
            raise

    return run


def new_version_of(request: pb.CreatePromptRequest) -> rules.NewVersion:
    kind = request.type or ("chat" if request.messages else "text")
    prompt: Any = request.text if kind == "text" else [_message_dict(m) for m in request.messages]
    config = json.loads(request.config_json) if request.config_json else MessageToDict(request.config)
    return rules.new_version(
        request.name, kind, prompt, config, list(request.labels), list(request.tags), request.commit_message
    )


def _message_dict(message: pb.ChatMessage) -> dict[str, str]:
    if message.type == "placeholder":
        return {"type": "placeholder", "name": message.name}
    return {"role": message.role, "content": message.content}


class PromptServicer:
    def __init__(self, registry: PromptRegistry, callers: Callers, watchers: Watchers) -> None:
        self._registry = registry
        self._callers = callers
        self._watchers = watchers

    async def _project(self, context: Context, method: str) -> uuid.UUID:
        """The caller's project, if its key holds the scope of `method` (scopes.GRPC_SCOPES)."""
        full_method = f"/{SERVICE}/{method}"
        metadata = context.invocation_metadata() or ()
        known = self._callers.recent(metadata, full_method)
        if known is not None:
            return known
        return await self._callers.project_for_metadata(metadata, full_method)

    @_answering
    async def get_prompt(self, request: pb.GetPromptRequest, context: Context) -> bytes:
        if not request.name:
            raise Invalid("name is required")
        if request.label and request.version:
            raise Invalid("ask for a label or a version, not both")
        project = await self._project(context, "GetPrompt")
        resolution = await self._registry.resolve(project, request.name, request.label, request.version)
        return resolution.response_bytes(resolution.pick(request.sticky_key))

    @_answering
    async def list_prompts(self, request: pb.ListPromptsRequest, context: Context) -> pb.ListPromptsResponse:
        prompts = await self._registry.prompts(await self._project(context, "ListPrompts"))
        return pb.ListPromptsResponse(
            prompts=[pb.PromptSummary(name=name, type=kind, versions=versions) for name, kind, versions in prompts]
        )

    @_answering
    async def create_prompt(self, request: pb.CreatePromptRequest, context: Context) -> pb.CreatePromptResponse:
        project = await self._project(context, "CreatePrompt")
        new = new_version_of(request)
        created = await self._registry.create(project, new, await self._callers.writer(_headers(context)))
        return pb.CreatePromptResponse(prompt=created)

    @_answering
    async def set_labels(self, request: pb.SetLabelsRequest, context: Context) -> pb.SetLabelsResponse:
        project = await self._project(context, "SetLabels")
        by = await self._callers.writer(_headers(context))
        moved = await self._registry.set_labels(project, request.name, request.version, list(request.labels), by)
        return pb.SetLabelsResponse(prompt=moved)

    @_answering
    async def set_label_split(self, request: pb.SetLabelSplitRequest, context: Context) -> pb.SetLabelSplitResponse:
        project = await self._project(context, "SetLabelSplit")
        by = await self._callers.writer(_headers(context))
        weights = [(w.version, w.weight) for w in request.weights]
        resolution = await self._registry.set_split(project, request.name, request.label, weights, by)
        return pb.SetLabelSplitResponse(
            split=[pb.WeightedVersion(prompt=resolution.by_version[v], weight=w) for v, w in resolution.weights]
        )

    async def watch_prompts(
        self, request: pb.WatchPromptsRequest, context: Context
    ) -> AsyncIterator[pb.WatchPromptsResponse]:
        try:
            project = await self._project(context, "WatchPrompts")
        except VaneError as exc:
            await context.abort(STATUS.get(exc.status, grpc.StatusCode.INTERNAL), json.dumps(exc.body()))
            return
        with self._watchers.subscribe(project) as queue:
            yield pb.WatchPromptsResponse(kind=WATCHING)
            while (event := await queue.get()) is not CLOSING:
                yield event

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetPrompt": unary(self.get_prompt, request_deserializer=pb.GetPromptRequest.FromString),
                "ListPrompts": unary(
                    self.list_prompts,
                    request_deserializer=pb.ListPromptsRequest.FromString,
                    response_serializer=pb.ListPromptsResponse.SerializeToString,
                ),
                "CreatePrompt": unary(
                    self.create_prompt,
                    request_deserializer=pb.CreatePromptRequest.FromString,
                    response_serializer=pb.CreatePromptResponse.SerializeToString,
                ),
                "SetLabels": unary(
                    self.set_labels,
                    request_deserializer=pb.SetLabelsRequest.FromString,
                    response_serializer=pb.SetLabelsResponse.SerializeToString,
                ),
                "SetLabelSplit": unary(
                    self.set_label_split,
                    request_deserializer=pb.SetLabelSplitRequest.FromString,
                    response_serializer=pb.SetLabelSplitResponse.SerializeToString,
                ),
                "WatchPrompts": grpc.unary_stream_rpc_method_handler(
                    self.watch_prompts,
                    request_deserializer=pb.WatchPromptsRequest.FromString,
                    response_serializer=pb.WatchPromptsResponse.SerializeToString,
                ),
            },
        )


def build_server(servicer: PromptServicer, shared_port: bool = False) -> grpc.aio.Server:
    """The gRPC server; `shared_port` lets the registry's other processes bind the same port."""
    # gRPC's C-core sets SO_REUSEPORT by default: a lone process must not share its port by accident.
    server = grpc.aio.server(options=[*SERVER_OPTIONS, ("grpc.so_reuseport", 1 if shared_port else 0)])
    server.add_generic_rpc_handlers((servicer.handler(),))
    return server
