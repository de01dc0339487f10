"""UID syntax (PS3.5 §9): digits and dots, at most 64 characters."""

from __future__ import annotations

import re

# Leading zeros in a component are not allowed by PS3.5 but occur in real files made by
# others; they are harmless to us, so only the character set and length are enforced.
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LENGTH = 64


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_UID_LENGTH and bool(_UID_RE.match(value))


def uid_problem(value: object) -> str | None:
    """Why `value` is not a usable UID, or None when it is."""
    if value is None or value == "":
        return "missing"
    if not isinstance(value, str):
        return "not a single value"
    if len(value) > MAX_UID_LENGTH:
        return f"longer than {MAX_UID_LENGTH} characters"
    if not _UID_RE.match(value):
        return "not digits and dots"
    return None
