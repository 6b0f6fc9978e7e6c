"""OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`, on the same span path.

The handler takes the request's raw bytes (no deserializer), so it parses once with the same
decoder as HTTP and derives the message id from exactly what the client sent.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from services.common.auth import Authenticator
from services.common.errors import Invalid, TooLarge, Unavailable
from services.common.grpc_auth import project_from_context
from services.common.quotas import RateLimited
from services.ingest.decode import decode_protobuf
from services.ingest.intake import SpanIntake

SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name


def trace_service(intake: SpanIntake, auth: Authenticator) -> grpc.GenericRpcHandler:
    async def export(body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> ExportTraceServiceResponse:
        project_id = await project_from_context(context, auth, f"/{SERVICE}/Export")
        failure: tuple[grpc.StatusCode, str] | None = None
        try:
            await intake.take(project_id, decode_protobuf(body), body)
        except Invalid as exc:
            failure = (grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except TooLarge as exc:
            failure = (grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
        except (Unavailable, RateLimited) as exc:
            # The OTLP exporters read RetryInfo to know how long to wait before retrying.
            retry = RetryInfo(retry_delay=Duration(seconds=exc.retry_after_seconds))
            context.set_trailing_metadata((("google.rpc.retryinfo-bin", retry.SerializeToString()),))
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if isinstance(exc, RateLimited) else grpc.StatusCode.UNAVAILABLE
            failure = (code, exc.message)
        if failure is not None:
            await context.abort(*failure)
        return ExportTraceServiceResponse()

    handler = grpc.unary_unary_rpc_method_handler(
        export, request_deserializer=None, response_serializer=ExportTraceServiceResponse.SerializeToString
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"Export": handler})
