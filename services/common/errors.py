"""Typed errors that every HTTP and gRPC edge maps the same way: {"error": {code, message, details}}."""

from __future__ import annotations

from typing import Any


class VaneError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class Invalid(VaneError):
    status = 400
    code = "invalid"


class Unauthenticated(VaneError):
    status = 401
    code = "unauthenticated"


class Forbidden(VaneError):
    """The key is valid but lacks the scope the call needs."""

    status = 403
    code = "forbidden"


class NotFound(VaneError):
    status = 404
    code = "not_found"


class Conflict(VaneError):
    status = 409
    code = "conflict"


class TooLarge(VaneError):
    status = 413
    code = "too_large"


class Unavailable(VaneError):
    """A dependency could not take the work in time: the client should retry after a pause."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_seconds: int = 1, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_seconds = retry_after_seconds
