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


# Seconds a client is asked to wait before retrying when storage is unreachable.
RETRY_AFTER_SECONDS = 10


def storage_unavailable(detail: str) -> Response:
    """503 with Retry-After: the object store or the database cannot be reached now."""
    return problem(503, detail, {"Retry-After": str(RETRY_AFTER_SECONDS)})
