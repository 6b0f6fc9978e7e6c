"""The caller on a gRPC call, from `authorization: Bearer <secret>` metadata, checked for the scope
its method needs (scopes.GRPC_SCOPES)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc

from services.common.auth import Authenticator
from services.common.errors import Forbidden, Unauthenticated
from services.common.scopes import grpc_scope, require


async def project_from_context(
    context: grpc.aio.ServicerContext[Any, Any], auth: Authenticator, method: str
) -> uuid.UUID:
    """The project of a call to `method` (its full name), or the call is aborted:
    UNAUTHENTICATED for a missing or wrong key, PERMISSION_DENIED naming the scope it lacks."""
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    try:
        principal = await auth.principal_for(metadata)
        require(principal.scopes, grpc_scope(method))
    except Unauthenticated as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, json.dumps(exc.body()))
        raise  # abort raises; this keeps type checkers sure the function never falls through
    except Forbidden as exc:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, json.dumps(exc.body()))
        raise
    return principal.project_id
