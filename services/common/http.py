"""The HTTP edge every service shares: a Litestar app with health routes, the caller's key checked
for the scope its route needs (one guard on every route, scopes.py decides the scope), the caller's
project from its key, one error shape ({"error": {code, message, details}}), and OpenAPI at /schema."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler

from services.common.auth import Principal
from services.common.errors import NotFound, VaneError
from services.common.health import health_routes
from services.common.logs import get_logger
from services.common.scopes import http_scope, require

if TYPE_CHECKING:
    from services.common.runtime import Resources

log = get_logger(component="http")

Authenticate = Callable[[Mapping[str, str]], Awaitable[Principal]]

_STATUS_CODES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def _error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response({"error": error}, status_code=status, headers=headers)


def _vane_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, VaneError)
    retry_after = getattr(exc, "retry_after_seconds", None)  # Unavailable (503) and RateLimited (429)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _error_response(exc.status, exc.code, exc.message, exc.details, headers)


def _http_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    details = exc.extra if isinstance(exc, ValidationException) else None
    return _error_response(status, _STATUS_CODES.get(status, "error"), exc.detail, details)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled_error", path=request.url.path, error=str(exc))
    return _error_response(500, "internal", "internal error")


def project_routes() -> list[ControllerRouterHandler]:
    """Who am I, and a project's own record: any other project's id answers 404, never its content."""

    @get("/api/v1/projects/current")
    async def current_project(project_id: uuid.UUID, request: Request[Any, Any, Any]) -> dict[str, Any]:
        return await _project_body(request, project_id)

    @get("/api/v1/projects/{requested:uuid}")
    async def project(requested: uuid.UUID, project_id: uuid.UUID, request: Request[Any, Any, Any]) -> dict[str, Any]:
        if requested != project_id:
            raise NotFound(f"project {requested} not found")
        return await _project_body(request, project_id)

    return [current_project, project]


async def _project_body(request: Request[Any, Any, Any], project_id: uuid.UUID) -> dict[str, Any]:
    resources: Resources = request.app.state.resources
    assert resources.pool is not None
    row = await resources.pool.fetchrow("SELECT id, name, created_at FROM projects WHERE id = $1", project_id)
    if row is None:
        raise NotFound(f"project {project_id} not found")
    return {"id": str(row["id"]), "name": row["name"], "created_at": row["created_at"].isoformat()}


def scope_guard(authenticate: Authenticate) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Any]:
    """The guard on every route: open routes pass; others need a key holding the route's scope.

    The principal is kept on the connection, so the handler's `project_id` costs no second lookup.
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        needed = http_scope(str(connection.scope.get("method", "GET")), connection.url.path)
        if needed is None:
            return
        principal = await authenticate(connection.headers)
        require(principal.scopes, needed)
        connection.state.principal = principal

    return guard


def build_http_app(
    resources: Resources,
    route_handlers: Sequence[ControllerRouterHandler],
    *,
    title: str,
    dependencies: dict[str, Provide] | None = None,
    max_body_bytes: int | None = None,
    authenticate: Authenticate | None = None,
) -> Litestar:
    """A service's HTTP app; `authenticate` replaces the shared key lookup (the registry's falls back
    to Redis while Postgres is down)."""

    async def lookup(headers: Mapping[str, str]) -> Principal:
        if resources.auth is None:
            raise VaneError("this service has no key store")
        return await resources.auth.principal_for(headers)

    authenticate = authenticate or lookup

    async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
        known = getattr(request.state, "principal", None)
        if isinstance(known, Principal):
            return known
        assert authenticate is not None
        return await authenticate(request.headers)

    async def provide_project_id(request: Request[Any, Any, Any]) -> uuid.UUID:
        return (await provide_principal(request)).project_id

    app = Litestar(
        route_handlers=[*health_routes(resources.readiness), *route_handlers],
        guards=[scope_guard(authenticate)],
        dependencies={
            "project_id": Provide(provide_project_id),
            "principal": Provide(provide_principal),
            **(dependencies or {}),
        },
        exception_handlers={VaneError: _vane_error, HTTPException: _http_error, Exception: _unexpected},
        openapi_config=OpenAPIConfig(title=title, version="0.1.0", path="/schema"),
        request_max_body_size=max_body_bytes or 10_000_000,
        logging_config=None,
        debug=False,
    )
    app.state.resources = resources
    return app
