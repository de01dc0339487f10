"""Client errors as JSON that names the problem; the server keeps serving."""

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
