"""OTLP/HTTP logs: `POST /v1/logs`. Ingest keeps only the GenAI events that belong to a span
(genai_events.py), for the spans to take their content (content_join.py); other log records are
accepted and dropped, as Vane keeps no logs."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, post
from litestar.types import ControllerRouterHandler
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from services.ingest.content_join import ContentJoin
from services.ingest.decode import JSON_TYPES, decompress, media_type
from services.ingest.genai_events import decode_logs, pieces

LOG_PATHS = ["/v1/logs", "/api/public/otel/v1/logs"]
_EMPTY_RESPONSE = ExportLogsServiceResponse().SerializeToString()


def otlp_log_routes(join: ContentJoin, max_body_bytes: int) -> list[ControllerRouterHandler]:
    @post(LOG_PATHS, status_code=200)
    async def export_logs(project_id: uuid.UUID, request: Request[Any, Any, Any]) -> Response[bytes]:
        """An OTLP ExportLogsServiceRequest; answered once its GenAI events are held for their spans."""
        body = decompress(await request.body(), request.headers.get("content-encoding"), max_body_bytes)
        content_type = request.headers.get("content-type")
        await join.keep(project_id, pieces(decode_logs(body, content_type)))
        if media_type(content_type) in JSON_TYPES:
            return Response(b"{}", media_type="application/json")
        return Response(_EMPTY_RESPONSE, media_type="application/x-protobuf")

    return [export_logs]
