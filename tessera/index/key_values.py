"""Checks on a matching key's raw value that both facades (QIDO-RS, C-FIND) make before the
query engine reads it."""

from __future__ import annotations

# The largest offset (and limit) SQL accepts: SQLite and PostgreSQL take a signed 64-bit integer.
MAX_ROW_COUNT = 2**63 - 1


def empty_value_list(value: str) -> bool:
    """A value list (PS3.4 C.2.2.2.1, values separated by backslashes) with no value in it,
    such as `\\` or ` \\ `: there is nothing to match, and it is not universal matching."""
    return "\\" in value and not any(item.strip() for item in value.split("\\"))
