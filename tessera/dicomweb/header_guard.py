"""Close the connection of a client whose request head grows absurdly large.

uvicorn's httptools protocol buffers a request's headers without bound before the
application sees them, so RequestLimits (request_limits.py) can refuse a 70 KB header with
431 but not keep a 100 MB one out of memory. This protocol counts the bytes received while
a request's head (request line and headers) is incomplete; past 4 x TESSERA_MAX_HEADER_BYTES
it answers 431 and closes the connection without reading more. `tessera serve` runs uvicorn
with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tessera.config import load_settings

_LIMIT: int | None = None
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 39\r\n\r\n"
    b"request headers too large (connection)\n"
)


def _limit() -> int:
    global _LIMIT
    if _LIMIT is None:
        _LIMIT = 4 * load_settings().max_header_bytes
    return _LIMIT


class HeaderGuardProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > _limit() and not self.transport.is_closing():
            self.transport.write(_REFUSAL)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head = True
        self._head_bytes = 0
        super().connection_made(transport)
