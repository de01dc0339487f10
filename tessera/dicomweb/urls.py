"""URLs in responses point at the host and path the client used, also behind a proxy."""

from __future__ import annotations

from starlette.requests import Request


def origin(request: Request) -> str:
    """scheme://host[:port] as the client sees it (X-Forwarded-Proto / -Host honoured)."""
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip() or request.url.scheme
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host")
    if not host:
        host = request.url.netloc
    return f"{scheme}://{host}"


DICOMWEB_SEGMENT = "/dicomweb"


def dicomweb_root(request: Request) -> str:
    """The tenant's DICOMweb root URL as the client addressed it, e.g.
    https://pacs.example/prefix/dicomweb (X-Forwarded-Prefix honoured)."""
    prefix = request.headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
    path = request.url.path
    # The root is /dicomweb or /t/{tenant}/dicomweb: the first whole "/dicomweb" segment (a
    # tenant named e.g. "dicomweb-x" must not cut the root short).
    index = (path + "/").find(DICOMWEB_SEGMENT + "/")
    root_path = path[: index + len(DICOMWEB_SEGMENT)] if index >= 0 else DICOMWEB_SEGMENT
    return f"{origin(request)}{prefix}{root_path}"
