"""Turn header values into the typed column values of the index.

Real files carry malformed values; a value that cannot be typed becomes NULL instead of
failing the instance (the DICOM JSON still carries it as received).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_DATE_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TIME_RE = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")


def raw_value(dataset: Dataset, keyword: str) -> Any:
    try:
        return dataset.get(keyword)
    except Exception:
        return None


def text(dataset: Dataset, keyword: str, max_length: int = 64) -> str | None:
    value = raw_value(dataset, keyword)
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value)
    result = str(value).strip().rstrip("\x00").strip()
    return result[:max_length] if result else None


def integer(dataset: Dataset, keyword: str) -> int | None:
    value = raw_value(dataset, keyword)
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if value else None
    try:
        return int(str(value).strip()) if value is not None and str(value).strip() else None
    except (TypeError, ValueError):
        return None


def parse_date(value: object) -> date | None:
    """DA value 'YYYYMMDD' (or the old 'YYYY.MM.DD') as a date; None if not a real date."""
    if value is None:
        return None
    match = _DATE_RE.match(str(value).strip())
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def parse_time(value: object) -> time | None:
    """TM value 'HH[MM[SS[.FFFFFF]]]' (colons tolerated) as a time; None if invalid."""
    if value is None:
        return None
    match = _TIME_RE.match(str(value).strip())
    if not match:
        return None
    hour, minute, second = int(match[1]), int(match[2] or 0), int(match[3] or 0)
    micro = int((match[4] or "0").ljust(6, "0"))
    try:
        return time(hour, minute, min(second, 59), micro)
    except ValueError:
        return None


_DATETIME_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:[+-]\d{4})?$"
)


def parse_datetime(value: object) -> datetime | None:
    """DT value as a naive datetime as written (a UTC offset is dropped); None if invalid."""
    if value is None:
        return None
    match = _DATETIME_RE.match(str(value).strip())
    if not match:
        return None
    year = int(match[1])
    month, day, hour, minute, second = (int(g) if g else None for g in match.groups()[1:6])
    try:
        return datetime(
            year,
            month or 1,
            day or 1,
            hour or 0,
            minute or 0,
            min(second or 0, 59),
            int((match[7] or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


def datetime_of(dataset: Dataset, keyword: str) -> datetime | None:
    return parse_datetime(raw_value(dataset, keyword))


def date_of(dataset: Dataset, keyword: str) -> date | None:
    return parse_date(raw_value(dataset, keyword))


def time_of(dataset: Dataset, keyword: str) -> time | None:
    return parse_time(raw_value(dataset, keyword))


def person_name(dataset: Dataset, keyword: str) -> str | None:
    """The person name as received (all component groups, decoded)."""
    return text(dataset, keyword, 324)


def normalize_person_name(name: str | None) -> str | None:
    """The form matched against: upper case, trailing empty components dropped, per group.

    The query engine must normalize match values with this same function.
    """
    if name is None:
        return None
    groups = [group.rstrip("^ ").strip() for group in name.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    normalized = "=".join(groups).upper()
    return normalized or None
