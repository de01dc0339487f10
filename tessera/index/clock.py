"""Times as the index writes them: aware UTC datetimes. A module of its own, importing
nothing of the index, so that any index module may use it without an import circle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands times back without a zone; they were written in UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    moment = as_utc(value)
    return None if moment is None else moment.isoformat()
