"""The dashboard: a static page (index.html, app.js, style.css, and uPlot vendored from npm under
static/vendor/) served at `/` and `/ui/…`. It reads only the public APIs, with the key the user types in."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC = Path(__file__).parent / "static"
# The page loads nothing from elsewhere and runs no inline script: a key typed into it stays here.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}


def dashboard_routes() -> list[ControllerRouterHandler]:
    index = (STATIC / "index.html").read_bytes()

    @get("/", include_in_schema=False, sync_to_thread=False)
    def page() -> Response[bytes]:
        return Response(index, media_type="text/html; charset=utf-8", headers=_HEADERS)

    assets = create_static_files_router(
        path="/ui", directories=[STATIC], include_in_schema=False, cache_control=None, name="dashboard-assets"
    )
    return [page, assets]
