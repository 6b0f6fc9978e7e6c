"""JSON over HTTP to Vane's APIs with the client's key, on the standard library alone (the SDK stays
light: an app that installs it gets no HTTP client dependency)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any


class ApiError(RuntimeError):
    """Vane refused a call (status and its error message), or could not be reached (status 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def call(
    method: str,
    base_url: str,
    path: str,
    secret_key: str,
    body: Any = None,
    params: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> Any:
    """The decoded JSON answer (None for an empty one); ApiError with Vane's own message otherwise."""
    query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
    url = f"{base_url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret_key}"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
            detail = json.loads(detail)["error"]["message"]  # Vane's {"error": {code, message, details}}
        raise ApiError(f"Vane refused {method} {path} ({exc.code}): {detail}", exc.code) from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach Vane at {base_url}: {exc.reason}") from None
    return json.loads(raw) if raw else None


def _param(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
