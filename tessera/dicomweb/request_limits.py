"""Request limits: header size, URL length and number of query parameters.

Checked before authentication and routing, on what the HTTP server parsed:

- headers larger than `max_header_bytes` (names, values and their separators, summed):
  431 Request Header Fields Too Large, and the connection is closed;
- a path plus query string longer than `max_url_bytes`: 414 URI Too Long;
- more than `max_query_parameters` query parameters: 400.

Each answer names the limit and its TESSERA_* setting (docs/running.md).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tessera.config import Settings
from tessera.dicomweb.errors import problem


class RequestLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_header_bytes = settings.max_header_bytes
        self.max_url_bytes = settings.max_url_bytes
        self.max_query_parameters = settings.max_query_parameters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                status, detail = refusal
                # A client that sent oversized headers may send more: do not keep it.
                headers = {"Connection": "close"} if status == 431 else None
                await problem(status, detail, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            return 431, (
                f"request headers are {header_bytes} bytes; the limit is "
                f"{self.max_header_bytes} (TESSERA_MAX_HEADER_BYTES)"
            )
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url_bytes = len(path) + (len(query) + 1 if query else 0)
        if url_bytes > self.max_url_bytes:
            return 414, (
                f"the URL (path and query) is {url_bytes} bytes; the limit is "
                f"{self.max_url_bytes} (TESSERA_MAX_URL_BYTES)"
            )
        parameters = sum(1 for field in query.split(b"&") if field)
        if parameters > self.max_query_parameters:
            return 400, (
                f"the query has {parameters} parameters; the limit is "
                f"{self.max_query_parameters} (TESSERA_MAX_QUERY_PARAMETERS)"
            )
        return None
