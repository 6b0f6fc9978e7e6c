"""OTLP/HTTP: `POST /v1/traces`, and the same handler where Langfuse's and Future AGI's SDKs send."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, post
from litestar.types import ControllerRouterHandler
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from services.ingest.decode import JSON_TYPES, decode_request, decompress, media_type
from services.ingest.intake import SpanIntake

TRACE_PATHS = ["/v1/traces", "/api/public/otel/v1/traces", "/tracer/v1/traces"]
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


def otlp_routes(intake: SpanIntake, max_body_bytes: int) -> list[ControllerRouterHandler]:
    @post(TRACE_PATHS, status_code=200)
    async def export_traces(project_id: uuid.UUID, request: Request[Any, Any, Any]) -> Response[bytes]:
        """An OTLP ExportTraceServiceRequest (protobuf or JSON, gzip or not), answered once durable."""
        body = decompress(await request.body(), request.headers.get("content-encoding"), max_body_bytes)
        content_type = request.headers.get("content-type")
        await intake.take(project_id, decode_request(body, content_type), body)
        if media_type(content_type) in JSON_TYPES:
            return Response(b"{}", media_type="application/json")
        return Response(_EMPTY_RESPONSE, media_type="application/x-protobuf")

    return [export_traces]
