"""Unhandled errors answer 500 and leave the connection open.

Starlette's ServerErrorMiddleware sends its 500 and then re-raises the exception, so uvicorn
closes the kept-alive connection and the client's next request on it fails with a reset.
This middleware, inside it, logs the error and answers 500 itself; the exception goes no
further. Only an error after the response has started (its status line is already sent)
still propagates: that response cannot be finished, and the connection has to close.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.dicomweb.errors import problem

log = logging.getLogger(__name__)


class ErrorBoundary:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            if started:
                raise
            log.exception("unhandled error", extra={"path": scope.get("path", "")})
            await problem(500, "internal error (logged)")(scope, receive, send)
