"""The query engine's typed query description, shared by QIDO-RS and C-FIND.

Interface (for the facades):

- ``Level``: PATIENT, STUDY, SERIES, INSTANCE (``Level.from_dicom("IMAGE")`` works).
- ``Query(level, ...)``: what to search. Fill it with ``query.add_key(name, raw_value)``
  for each key: ``name`` is a keyword (``"PatientName"``), an 8-hex-digit tag string
  (``"00100010"``) or an int tag; ``raw_value`` is the DICOM string form of the key as
  PS3.4 C.2.2.2 reads it (``""`` = universal / return key, ``"DOE*"`` wildcard,
  ``"20200101-"`` open date range, ``"1.2\\1.3"`` UID list, ...). A key with an empty value
  (or ``*``) only asks for the attribute to be returned. ``add_key`` raises ``QueryError``
  for anything malformed or unsupported (``unsupported="return"`` turns an unsupported
  matching key into a return key instead, which is what a C-FIND SCP may do).
  Other fields: ``return_keys`` (extra tags to return), ``include_all``,
  ``include_defaults`` (PS3.18 default attributes; a C-FIND sets False to get exactly its
  keys), ``limit``/``offset``, ``fuzzy`` (person-name fuzzy matching, set BEFORE adding
  keys), ``combine_date_time`` (StudyDate+StudyTime ranges as one datetime range).
- ``build_match(level, name, raw_value, fuzzy=False)`` -> ``Match | None`` (None =
  universal), the single-key builder ``add_key`` uses.
- ``QueryError(parameter, reason)``: QIDO answers 400 naming the parameter; C-FIND a
  failure status (0xA900 / 0xC000 range).
- ``tessera.index.query_sql.run_query(conn, scope, query, retrieve_root=None)`` ->
  ``QueryPage(items, more)``: DICOM JSON dicts (``{"00100010": {"vr": "PN", "Value":
  [{"Alphabetic": ...}]}}``), valid input for ``pydicom.Dataset.from_json``; ``more`` is
  True when results beyond ``limit`` exist. ``iter_query(conn, scope, query)`` yields every
  result (C-FIND) in bounded batches inside the caller's transaction. The Scope's tenant and
  sources are applied inside the SQL; for a source-locked scope counts and value lists
  reflect only the visible instances, every study/series/patient value shown or matched
  comes from the visible sources' own rows, and entities without a visible instance do not
  appear.

Matching semantics (documented in docs/qido.md): person names match case-insensitively
(against ``attributes.normalize_person_name``); other strings are case-sensitive as PS3.4
says; ``fuzzy`` person-name matching matches each word of the value as the case-insensitive
prefix of some name component; a single date/time value matches its whole precision
("1015" = 10:15:00-10:15:59.999999).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time

from tessera.index.attributes import normalize_person_name, parse_date
from tessera.index.query_attributes import (
    Attribute,
    Level,
    resolve,
)
from tessera.storage.uids import is_valid_uid

__all__ = [
    "Level",
    "MatchKind",
    "Match",
    "Query",
    "QueryError",
    "build_match",
]


class QueryError(ValueError):
    """A query key or parameter that is malformed or unsupported."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


class MatchKind(enum.Enum):
    SINGLE = "single"  # one value (typed bounds for dates/times)
    LIST = "list"  # UID list, or several CS values: any of them
    WILDCARD = "wildcard"  # '*' and '?' in the value
    RANGE = "range"  # dates, times, datetimes; one side may be open
    FUZZY = "fuzzy"  # person names: each word a prefix of some name component


@dataclass(frozen=True)
class Match:
    attribute: Attribute
    kind: MatchKind
    # SINGLE/LIST: the values (str or int); WILDCARD: (pattern,); FUZZY: the words.
    values: tuple = ()
    # Dates/times/datetimes (SINGLE and RANGE): inclusive bounds, None = open.
    low: date | time | datetime | None = None
    high: date | time | datetime | None = None


# Study attributes a study search may be ordered by (`orderby=`): only columns with an index
# on the study and per-source study rows, so an ordered page is read from the index.
SORT_KEYS = ("StudyDate", "PatientName", "PatientID", "AccessionNumber")


@dataclass
class Query:
    level: Level
    matches: list[Match] = field(default_factory=list)
    # Tags to return besides the defaults (registry or not: others come from the stored
    # metadata of the instance, or of the first instance of the series/study).
    return_keys: list[int] = field(default_factory=list)
    include_all: bool = False
    # PS3.18 default return attributes (QIDO-RS); a C-FIND wants exactly its keys.
    include_defaults: bool = True
    # Also return the defaults of these levels above (PS3.18: /series adds the study
    # defaults, /instances the study and series ones, /studies/{s}/instances the series ones).
    parent_defaults: tuple[Level, ...] = ()
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    combine_date_time: bool = True
    # Only the studies of these identities (patient keys): a person's history
    # (`{api}/patients/{id}/studies`, tessera.index.priors).
    patient_pks: tuple[int, ...] | None = None
    # Tessera extension (study level): only studies with a visible order in one of these
    # statuses (`orderstatus=`), and/or the statuses returned (tessera.index.order_status_query).
    order_statuses: tuple[str, ...] | None = None
    return_order_status: bool = False
    # Tessera extension (study level, `orderby=`): the results' order as (keyword,
    # descending) pairs, from SORT_KEYS; empty: newest first (tessera.index.query_sql).
    order: tuple[tuple[str, bool], ...] = ()

    def add_key(
        self,
        name: str | int,
        raw_value: str | None,
        *,
        parameter: str | None = None,
        unsupported: str = "error",
    ) -> None:
        """Add one key: a matching key, or (empty value) a return key."""
        label = parameter or (name if isinstance(name, str) else f"{name:08X}")
        try:
            tag, _keyword, entry = resolve(name)
        except ValueError as exc:
            raise QueryError(label, str(exc)) from None
        value = (raw_value or "").strip()
        if tag not in self.return_keys:
            self.return_keys.append(tag)
        if _is_universal(value):
            return
        if entry is None or not entry.matchable:
            if unsupported == "return":
                return
            raise QueryError(label, "matching on this attribute is not supported")
        match = build_match(self.level, entry.tag, value, fuzzy=self.fuzzy, parameter=label)
        if match is not None:
            self.matches.append(match)


def _is_universal(value: str) -> bool:
    return value == "" or (value.strip("*") == "" and "?" not in value)


def allowed_at(attribute: Attribute, level: Level) -> bool:
    """May `attribute` be matched in a search at `level`?"""
    if level is Level.PATIENT:
        return attribute.level is Level.PATIENT
    return attribute.level <= level


def build_match(
    level: Level,
    name: str | int,
    raw_value: str,
    *,
    fuzzy: bool = False,
    parameter: str | None = None,
) -> Match | None:
    """One key -> its Match (None for universal matching). PS3.4 C.2.2.2 rules by VR."""
    label = parameter or (name if isinstance(name, str) else f"{name:08X}")
    try:
        tag, keyword, entry = resolve(name)
    except ValueError as exc:
        raise QueryError(label, str(exc)) from None
    if entry is None or not entry.matchable:
        raise QueryError(label, f"matching on {keyword} is not supported")
    if not allowed_at(entry, level):
        raise QueryError(
            label,
            f"{keyword} is a {entry.level.name.lower()}-level attribute, "
            f"not available in a {level.name.lower()}-level search",
        )
    value = raw_value.strip()
    if _is_universal(value):
        return None
    vr = entry.vr
    if vr == "DA":
        return _date_match(entry, value, label)
    if vr == "TM":
        return _time_match(entry, value, label)
    if vr == "DT":
        return _datetime_match(entry, value, label)
    if vr in ("IS", "US", "UL", "SS", "SL"):
        return _integer_match(entry, value, label)
    if vr == "UI":
        uids = tuple(v.strip() for v in value.split("\\") if v.strip())
        if "*" in value or "?" in value:
            raise QueryError(label, "wildcards are not allowed in UIDs")
        for uid in uids:
            if not is_valid_uid(uid):
                raise QueryError(label, f"{uid!r} is not a valid UID")
        return Match(entry, MatchKind.LIST if len(uids) > 1 else MatchKind.SINGLE, uids)
    if "\x00" in value:
        raise QueryError(label, "the value contains a NUL character")
    if vr == "PN":
        return _person_name_match(entry, value, label, fuzzy)
    if vr == "CS" and "\\" in value:
        values = tuple(v.strip() for v in value.split("\\") if v.strip())
        if any("*" in v or "?" in v for v in values):
            raise QueryError(label, "wildcards cannot be combined with a value list")
        return Match(entry, MatchKind.LIST, values)
    if "*" in value or "?" in value:
        return Match(entry, MatchKind.WILDCARD, (value,))
    return Match(entry, MatchKind.SINGLE, (value,))


_FUZZY_SPLIT = re.compile(r"[\s^=,]+")


def _person_name_match(entry: Attribute, value: str, label: str, fuzzy: bool) -> Match | None:
    if fuzzy:
        words = tuple(w for w in _FUZZY_SPLIT.split(value.upper()) if w.strip("*"))
        if not words:
            return None
        return Match(entry, MatchKind.FUZZY, words)
    normalized = normalize_person_name(value)
    if normalized is None:
        return None
    if "*" in normalized or "?" in normalized:
        return Match(entry, MatchKind.WILDCARD, (normalized,))
    return Match(entry, MatchKind.SINGLE, (normalized,))


def _integer_match(entry: Attribute, value: str, label: str) -> Match:
    values = []
    for part in value.split("\\"):
        try:
            values.append(int(part.strip()))
        except ValueError:
            raise QueryError(label, f"{part!r} is not an integer") from None
    return Match(entry, MatchKind.LIST if len(values) > 1 else MatchKind.SINGLE, tuple(values))


def _split_range(value: str, label: str) -> tuple[str, str] | None:
    if "-" not in value:
        return None
    if value.count("-") > 1:
        raise QueryError(label, f"{value!r} is not a valid range")
    low, high = value.split("-")
    if not low.strip() and not high.strip():
        raise QueryError(label, "a range needs at least one end")
    return low.strip(), high.strip()


def _date_match(entry: Attribute, value: str, label: str) -> Match:
    if "*" in value or "?" in value or "\\" in value:
        raise QueryError(label, f"{value!r}: dates support single values and ranges only")
    bounds = _split_range(value, label)

    def parse(text: str) -> date:
        parsed = parse_date(text)
        if parsed is None:
            raise QueryError(label, f"{text!r} is not a valid date (YYYYMMDD)")
        return parsed

    if bounds is None:
        day = parse(value)
        return Match(entry, MatchKind.SINGLE, (value,), day, day)
    low = parse(bounds[0]) if bounds[0] else None
    high = parse(bounds[1]) if bounds[1] else None
    if low and high and low > high:
        raise QueryError(label, f"{value!r}: the range ends before it starts")
    return Match(entry, MatchKind.RANGE, (value,), low, high)


_TIME_RE = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")


def time_bounds(text: str) -> tuple[time, time] | None:
    """The first and last instant a TM value (of any precision) stands for."""
    match = _TIME_RE.match(text)
    if not match:
        return None
    hour = int(match[1])
    minute = int(match[2]) if match[2] else None
    second = int(match[3]) if match[3] else None
    fraction = match[4]
    try:
        if minute is None:
            return time(hour), time(hour, 59, 59, 999999)
        if second is None:
            return time(hour, minute), time(hour, minute, 59, 999999)
        second = min(second, 59)  # leap second
        if fraction is None:
            return time(hour, minute, second), time(hour, minute, second, 999999)
        low = int(fraction.ljust(6, "0"))
        high = int(fraction.ljust(6, "9"))
        return time(hour, minute, second, low), time(hour, minute, second, high)
    except ValueError:
        return None


def _time_match(entry: Attribute, value: str, label: str) -> Match:
    if "*" in value or "?" in value or "\\" in value:
        raise QueryError(label, f"{value!r}: times support single values and ranges only")

    def parse(text: str) -> tuple[time, time]:
        bounds = time_bounds(text)
        if bounds is None:
            raise QueryError(label, f"{text!r} is not a valid time (HHMMSS.FFFFFF)")
        return bounds

    split = _split_range(value, label)
    if split is None:
        single_low, single_high = parse(value)
        return Match(entry, MatchKind.SINGLE, (value,), single_low, single_high)
    low = parse(split[0])[0] if split[0] else None
    high = parse(split[1])[1] if split[1] else None
    if low and high and low > high:
        raise QueryError(label, f"{value!r}: the range ends before it starts")
    return Match(entry, MatchKind.RANGE, (value,), low, high)


_DT_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)


def datetime_bounds(text: str) -> tuple[datetime, datetime] | None:
    """The first and last instant a DT value stands for (a UTC offset is ignored: the
    index keeps datetimes as written)."""
    match = _DT_RE.match(text)
    if not match:
        return None
    year = int(match[1])
    parts = [int(g) if g else None for g in match.groups()[1:6]]
    month, day, hour, minute, second = parts
    fraction = match[7]
    try:
        low = datetime(
            year,
            month or 1,
            day or 1,
            hour or 0,
            minute or 0,
            min(second or 0, 59),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
        if month is None:
            high = datetime(year, 12, 31, 23, 59, 59, 999999)
        elif day is None:
            next_month = datetime(year + month // 12, month % 12 + 1, 1)
            high = datetime.fromordinal(next_month.toordinal() - 1).replace(
                hour=23, minute=59, second=59, microsecond=999999
            )
        else:
            high = low.replace(
                hour=23 if hour is None else hour,
                minute=59 if minute is None else minute,
                second=59 if second is None else min(second, 59),
                microsecond=int(fraction.ljust(6, "9")) if fraction else 999999,
            )
        return low, high
    except ValueError:
        return None


def _datetime_match(entry: Attribute, value: str, label: str) -> Match:
    if "*" in value or "?" in value or "\\" in value:
        raise QueryError(label, f"{value!r}: datetimes support single values and ranges only")

    def parse(text: str) -> tuple[datetime, datetime]:
        bounds = datetime_bounds(text)
        if bounds is None:
            raise QueryError(label, f"{text!r} is not a valid datetime (YYYYMMDDHHMMSS)")
        return bounds

    # A UTC offset's '-' is not a range separator: split on the '-' that has 4+ digits
    # before it and is not followed by exactly 4 digits at the end.
    split = _split_datetime_range(value)
    if split is None:
        single_low, single_high = parse(value)
        return Match(entry, MatchKind.SINGLE, (value,), single_low, single_high)
    low = parse(split[0])[0] if split[0] else None
    high = parse(split[1])[1] if split[1] else None
    if low is None and high is None:
        raise QueryError(label, "a range needs at least one end")
    if low and high and low > high:
        raise QueryError(label, f"{value!r}: the range ends before it starts")
    return Match(entry, MatchKind.RANGE, (value,), low, high)


def _split_datetime_range(value: str) -> tuple[str, str] | None:
    if _DT_RE.match(value):
        return None
    for index, char in enumerate(value):
        if char == "-":
            low, high = value[:index], value[index + 1 :]
            if (not low or _DT_RE.match(low)) and (not high or _DT_RE.match(high)):
                return low, high
    return None
