"""A QIDO-RS query string -> a typed `Query` (PS3.18 §8.3.4, §10.6.1.2).

The query string is percent-decoded before lists are split, so `includefield=a%2Cb` (what
OHIF sends) is two fields. Every parameter must be understood: an unknown name, a malformed
value or an attribute that cannot be matched at the searched level is a QueryError naming
the parameter (the facade answers 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from tessera.index.key_values import MAX_ROW_COUNT, empty_value_list, integer_range_problem
from tessera.index.orders import STATUSES
from tessera.index.query import SORT_KEYS, Level, Query, QueryError
from tessera.index.query_attributes import resolve
from tessera.index.sources import SOURCE_NAME_RE
from tessera.storage.uids import uid_problem

# Parameters PS3.18 defines that carry no matching key, and tessera's `source` (read by
# `requested_sources`).
_CONTROL = {
    "limit",
    "offset",
    "fuzzymatching",
    "includefield",
    "accept",
    "charset",
    "source",
    "orderby",
}
# Tessera's extension: the status of the study's order (docs/qido.md "Order status").
ORDER_STATUS_PARAMETER = "orderstatus"
ORDER_STATUS_FIELD = "OrderStatus"
# Value lists in QIDO-RS are comma-separated; the query engine takes DICOM's backslash.
_LIST_VRS = {"UI", "CS"}


def parse_search(level: Level, query_string: str, path_params: Mapping[str, str]) -> Query:
    pairs = parse_qsl(query_string, keep_blank_values=True)
    query = Query(level)
    study_uid = path_params.get("study")
    series_uid = path_params.get("series")
    if level is Level.SERIES and study_uid is None:
        query.parent_defaults = (Level.STUDY,)
    elif level is Level.INSTANCE and study_uid is None:
        query.parent_defaults = (Level.STUDY, Level.SERIES)
    elif level is Level.INSTANCE and series_uid is None:
        query.parent_defaults = (Level.SERIES,)

    controls = [(name, value) for name, value in pairs if name in _CONTROL]
    keys = [(name, value) for name, value in pairs if name not in _CONTROL]
    extension = [value for name, value in keys if name == ORDER_STATUS_PARAMETER]
    keys = [(name, value) for name, value in keys if name != ORDER_STATUS_PARAMETER]
    if extension:
        _order_statuses(query, extension)
    seen: set[str] = set()
    for name, value in controls:
        if name in ("limit", "offset", "fuzzymatching", "orderby") and name in seen:
            raise QueryError(name, "given more than once")
        seen.add(name)
        if name == "limit":
            query.limit = _integer(name, value, minimum=1)
        elif name == "offset":
            query.offset = _integer(name, value, minimum=0)
        elif name == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise QueryError(name, f"must be true or false, not {value!r}")
            query.fuzzy = value.lower() == "true"
        elif name == "includefield":
            _include(query, value)
        elif name == "orderby":
            _order(query, value)
        elif name == "accept" and value and "json" not in value:
            raise QueryError(name, f"QIDO-RS answers in application/dicom+json, not {value!r}")

    for parameter, uid in (("study", study_uid), ("series", series_uid)):
        if uid is not None:
            problem = uid_problem(uid)
            if problem:
                raise QueryError(f"{parameter} UID in the path", problem)
    if study_uid is not None:
        query.add_key("StudyInstanceUID", study_uid, parameter="StudyInstanceUID (path)")
    if series_uid is not None:
        query.add_key("SeriesInstanceUID", series_uid, parameter="SeriesInstanceUID (path)")

    matched: set[int] = set()
    for name, value in keys:
        if "." in name:
            raise QueryError(name, "sequence matching is not supported")
        try:
            tag, _keyword, entry = resolve(name)
        except ValueError:
            raise QueryError(name, "unknown parameter (not a DICOM keyword or tag)") from None
        if tag in matched:
            raise QueryError(name, "given more than once")
        matched.add(tag)
        if entry is not None and entry.vr in _LIST_VRS:
            value = value.replace(",", "\\")
        if empty_value_list(value):
            raise QueryError(name, "the value list holds no value")
        problem = integer_range_problem(entry.vr, value) if entry is not None else None
        if problem:
            raise QueryError(name, problem)
        query.add_key(tag, value, parameter=name)
    return query


def _integer(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise QueryError(name, f"{value!r} is not an integer") from None
    if number < minimum:
        raise QueryError(name, f"must be at least {minimum}")
    if number > MAX_ROW_COUNT:
        raise QueryError(name, f"must be at most {MAX_ROW_COUNT}")
    return number


def _include(query: Query, value: str) -> None:
    for field in (f.strip() for f in value.split(",")):
        if not field:
            continue
        if field.lower() == "all":
            query.include_all = True
            continue
        if field == ORDER_STATUS_FIELD:
            _study_level(query, "includefield")
            query.return_order_status = True
            continue
        if "." in field:
            raise QueryError("includefield", f"{field!r}: sequence paths are not supported")
        try:
            tag, _keyword, _entry = resolve(field)
        except ValueError:
            raise QueryError("includefield", f"{field!r} is not a DICOM keyword or tag") from None
        if tag not in query.return_keys:
            query.return_keys.append(tag)


def _order(query: Query, value: str) -> None:
    """`orderby=-StudyDate,PatientName` (Tessera extension, study searches): sort keys,
    `-` for descending; only SORT_KEYS (indexed columns), each once."""
    if query.level is not Level.STUDY:
        raise QueryError("orderby", "ordering is a study search extension (/studies)")
    order: list[tuple[str, bool]] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        descending = item.startswith("-")
        name = item.lstrip("+-").strip()
        if name not in SORT_KEYS:
            raise QueryError(
                "orderby", f"cannot order by {name[:64]!r} (one of {', '.join(SORT_KEYS)})"
            )
        if any(name == seen for seen, _ in order):
            raise QueryError("orderby", f"{name!r} given more than once")
        order.append((name, descending))
    if not order:
        raise QueryError("orderby", "give one or more keys, e.g. -StudyDate")
    query.order = tuple(order)


def _study_level(query: Query, parameter: str) -> None:
    if query.level is not Level.STUDY:
        raise QueryError(parameter, "the order status is a study search extension (/studies)")


def _order_statuses(query: Query, values: list[str]) -> None:
    """`orderstatus=IMAGES_READY,REPORTED`: studies with an order in one of these statuses."""
    _study_level(query, ORDER_STATUS_PARAMETER)
    if len(values) > 1:
        raise QueryError(ORDER_STATUS_PARAMETER, "given more than once")
    statuses = tuple(dict.fromkeys(v.strip().upper() for v in values[0].split(",") if v.strip()))
    if not statuses:
        raise QueryError(ORDER_STATUS_PARAMETER, "the value list holds no value")
    unknown = [status for status in statuses if status not in STATUSES]
    if unknown:
        raise QueryError(
            ORDER_STATUS_PARAMETER,
            f"unknown order status {unknown[0]!r} (one of {', '.join(STATUSES)})",
        )
    query.order_statuses = statuses
    query.return_order_status = True


def requested_sources(query_string: str) -> list[str] | None:
    """The source names of `source=A,B` (repeatable; tessera's extension: only instances
    received from these sources), None when not given. A malformed name is a QueryError."""
    values = [
        value for name, value in parse_qsl(query_string, keep_blank_values=True) if name == "source"
    ]
    if not values:
        return None
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    if not names:
        raise QueryError("source", "give one or more source names")
    for name in names:
        if not SOURCE_NAME_RE.match(name):
            raise QueryError("source", f"{name!r} is not a source name")
    return names
