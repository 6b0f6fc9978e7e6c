"""The caller's project on a gRPC call, from `authorization: Bearer <secret>` metadata."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc

from services.common.auth import Authenticator
from services.common.errors import Unauthenticated


async def project_from_context(context: grpc.aio.ServicerContext[Any, Any], auth: Authenticator) -> uuid.UUID:
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    try:
        return await auth.project_for(metadata)
    except Unauthenticated as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, json.dumps(exc.body()))
        raise  # abort raises; this keeps type checkers sure the function never falls through
