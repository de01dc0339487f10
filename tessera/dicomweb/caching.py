"""Validators and cache headers for retrieved resources (ETag, Last-Modified, 304).

A stored instance's bytes never change under its SHA-256, so an entity tag built from the
SHA-256s of what a response is made of (plus how it is represented) identifies the response
exactly; when an instance is added to a series, the series' tag changes with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response

# Instance-level resources (an instance, its frames, bulk data, rendered images): may be
# reused for an hour without asking. Study and series level: always revalidated, because
# instances can be added. "private": the answer depends on who asks (source-locked users).
INSTANCE_CACHE_CONTROL = "private, max-age=3600"
COLLECTION_CACHE_CONTROL = "private, no-cache"


def entity_tag(*parts: str | Iterable[str]) -> str:
    """A strong ETag over the given strings (in order)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        for piece in [part] if isinstance(part, str) else part:
            digest.update(piece.encode())
            digest.update(b"\0")
    return f'"{digest.hexdigest()}"'


def http_date(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC timestamps
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def latest(moments: Iterable[datetime | None]) -> datetime | None:
    aware = [m if m.tzinfo is not None else m.replace(tzinfo=UTC) for m in moments if m is not None]
    return max(aware) if aware else None


def cache_headers(
    etag: str, last_modified: datetime | None, collection: bool = False
) -> dict[str, str]:
    headers = {
        "ETag": etag,
        "Cache-Control": COLLECTION_CACHE_CONTROL if collection else INSTANCE_CACHE_CONTROL,
        "Vary": "Accept",
    }
    stamp = http_date(last_modified)
    if stamp:
        headers["Last-Modified"] = stamp
    return headers


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]  # weak comparison is what If-None-Match uses
        if candidate == etag:
            return True
    return False


def is_not_modified(request: Request, etag: str, last_modified: datetime | None) -> bool:
    """RFC 9110 §13.1: If-None-Match wins over If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since and last_modified is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        moment = last_modified if last_modified.tzinfo else last_modified.replace(tzinfo=UTC)
        return moment.replace(microsecond=0) <= since
    return False


def not_modified_response(headers: dict[str, str]) -> Response:
    return Response(status_code=304, headers=headers)
