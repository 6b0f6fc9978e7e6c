"""/healthz, /readyz and /metrics, the same on every HTTP port.

/readyz asks each dependency the service needs, live and with a short timeout. A required one
that fails turns it 503 with the reason; an optional one (the registry's Redis) only marks it
degraded, since the service still answers without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from litestar import Response, get
from litestar.response import Response as LitestarResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Check = Callable[[], Awaitable[None]]


@dataclass
class Readiness:
    checks: dict[str, tuple[Check, bool]] = field(default_factory=dict)  # name -> (check, required)
    timeout_seconds: float = 1.0

    def add(self, name: str, check: Check, required: bool = True) -> None:
        self.checks[name] = (check, required)

    async def report(self) -> tuple[bool, dict[str, Any]]:
        async def run(name: str, check: Check) -> tuple[str, str | None]:
            try:
                await asyncio.wait_for(check(), self.timeout_seconds)
                return name, None
            except Exception as exc:
                return name, f"{type(exc).__name__}: {exc}".strip(": ") or type(exc).__name__

        results = await asyncio.gather(*(run(n, c) for n, (c, _) in self.checks.items()))
        details: dict[str, str] = {}
        failed_required: list[str] = []
        degraded: list[str] = []
        for name, error in results:
            details[name] = "ok" if error is None else f"down: {error}"
            if error is not None:
                (failed_required if self.checks[name][1] else degraded).append(name)
        if failed_required:
            reason = "; ".join(f"{n} is unreachable ({details[n][6:]})" for n in failed_required)
            return False, {"status": "not_ready", "error": reason, "checks": details}
        status = "degraded" if degraded else "ready"
        return True, {"status": status, "checks": details}


def health_routes(readiness: Readiness) -> list[Any]:
    @get("/healthz", include_in_schema=False, sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[dict[str, Any]]:
        ready, body = await readiness.report()
        return Response(body, status_code=200 if ready else 503)

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics() -> LitestarResponse[bytes]:
        return LitestarResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [healthz, readyz, metrics]
