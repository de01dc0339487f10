"""The web portal: static HTML and JavaScript (plain ES modules, no build step) served at
/portal/. It holds no data and no logic of its own: the pages call the public REST and
DICOMweb APIs with the signed-in user's bearer token, and the server enforces every
permission (docs/portal.md). The files are public (like the viewer's); every API call they
make authenticates.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

PORTAL_PATH = "/portal"
STATIC_DIR = Path(__file__).parent / "static"

# The pages run only our own scripts, show images only from this origin (and the blob: URLs
# of thumbnails fetched with the token), and may not be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Portal:
    """The portal's files under PORTAL_PATH, and its config.json (where the viewer is, and
    whether anonymous requests may be served)."""

    def __init__(self, viewer_path: str | None = None, anonymous: bool = False) -> None:
        self.viewer_path = viewer_path
        # Whether the server may serve anonymous requests (the loopback quick start): the
        # page then asks {api}/me without signing in first.
        self.anonymous = anonymous
        self.static = StaticFiles(directory=STATIC_DIR)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(PORTAL_PATH, self.redirect, methods=["GET", "HEAD"]),
            Route(PORTAL_PATH + "/{path:path}", self.serve, methods=["GET", "HEAD"]),
        ]

    async def redirect(self, request: Request) -> Response:
        prefix = _forwarded_prefix(request)
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{prefix}{PORTAL_PATH}/{query}", status_code=308)

    async def serve(self, request: Request) -> Response:
        path = request.path_params["path"] or "index.html"
        if path == "config.json":
            viewer = None
            if self.viewer_path is not None:
                viewer = _forwarded_prefix(request) + self.viewer_path.rstrip("/") + "/"
            response: Response = Response(
                json.dumps({"viewer": viewer, "anonymous": self.anonymous}),
                media_type="application/json",
            )
        else:
            response = await self.static.get_response(path, request.scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def _forwarded_prefix(request: Request) -> str:
    return request.headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
