"""Client errors: raised anywhere under a handler, answered as JSON that names the problem.

Handlers raise one of these (or a lower layer's error that the app's exception-handler table
in `tessera.dicomweb.app` maps to a status); they never build an error response themselves.
The server keeps serving.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"status": status, "detail": detail}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class ClientError(Exception):
    """A request the client can fix: answered `status` with `detail` (and `headers`)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    def response(self) -> Response:
        return problem(self.status, self.detail, self.headers)


class BadRequest(ClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


class NotFound(ClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(404, detail)


class NotAcceptable(ClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(406, detail)


class Conflict(ClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, detail)


class UnsupportedMediaType(ClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(415, detail)
