"""Checks on a matching key's raw value that both facades (QIDO-RS, C-FIND) make before the
query engine reads it."""

from __future__ import annotations

# The largest offset (and limit) SQL accepts: SQLite and PostgreSQL take a signed 64-bit integer.
MAX_ROW_COUNT = 2**63 - 1


def empty_value_list(value: str) -> bool:
    """A value list (PS3.4 C.2.2.2.1, values separated by backslashes) with no value in it,
    such as `\\` or ` \\ `: there is nothing to match, and it is not universal matching."""
    return "\\" in value and not any(item.strip() for item in value.split("\\"))


# The values an integer VR can hold (PS3.5 Table 6.2-1); a key outside them matches nothing
# and cannot be bound to SQL.
_INTEGER_RANGES = {
    "IS": (-(2**31), 2**31 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "US": (0, 2**16 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UL": (0, 2**32 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "UV": (0, 2**63 - 1),
}


def integer_range_problem(vr: str, value: str) -> str | None:
    """Why an integer key's value cannot be matched (a number outside its VR's range), or
    None. Values that are no integer at all are left to the query engine to name."""
    bounds = _INTEGER_RANGES.get(vr)
    if bounds is None:
        return None
    low, high = bounds
    for item in value.split("\\"):
        try:
            number = int(item.strip())
        except ValueError:
            continue
        if not low <= number <= high:
            return f"{item.strip()} is outside the range of VR {vr} ({low} to {high})"
    return None
