"""CORS, so a viewer served from another origin (OHIF on its own host) can use the archive.

Allowed origins come from TESSERA_CORS_ORIGINS (comma-separated; `*` for any). Preflights
are answered by the middleware without touching the application, and browsers may cache
them for `PREFLIGHT_MAX_AGE` seconds (Chromium caps this at 2 hours), because a viewer
sends one for nearly every frame URL.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from tessera.config import Settings

PREFLIGHT_MAX_AGE = 7200
# Response headers a script may read (beyond the CORS-safelisted ones).
EXPOSED_HEADERS = [
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Warning",
    "Content-Location",
]


def cors_middleware(settings: Settings) -> list[Middleware]:
    """The CORS middleware for the configured origins (none configured: no CORS)."""
    origins = [origin.rstrip("/") for origin in settings.cors_origins]
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["*"],
            # Credentials (cookies, Authorization) only with an explicit origin list.
            allow_credentials="*" not in origins,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )
    ]
