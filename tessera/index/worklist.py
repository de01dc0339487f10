"""The Modality Worklist query (PS3.4 Annex K) over the order tables: one worklist item per
scheduled procedure step of an open order the Scope sees.

Matching (PS3.4 C.2.2.2): single value, list of values (AE, CS, UI), wildcards '*' and '?',
person names case-insensitively (the normalized column, as QIDO-RS and C-FIND match),
date and time ranges, with Scheduled Procedure Step Start Date and Time combined into one
date-time range when both are given. Keys inside the Scheduled Procedure Step Sequence
match the step; the other keys match the order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, time

from sqlalchemy import ColumnElement, Connection, RowMapping, and_, false, or_, select

from tessera.index.attributes import normalize_person_name, parse_date
from tessera.index.order_store import ORDER, STEP, visible_orders
from tessera.index.orders import IN_PROGRESS, OPEN_STATUSES, SCHEDULED
from tessera.index.query import time_bounds
from tessera.index.query_sql import wildcard_match
from tessera.scope import Scope


class WorklistKeyError(ValueError):
    """A matching key whose value cannot be used (a malformed date, time or range)."""


# Keyword -> (column, VR) of the matching keys this SCP supports.
ORDER_KEYS: dict[str, tuple[ColumnElement, str]] = {
    "PatientName": (ORDER.c.patient_name_norm, "PN"),
    "PatientID": (ORDER.c.patient_id, "LO"),
    "IssuerOfPatientID": (ORDER.c.issuer_of_patient_id, "LO"),
    "PatientSex": (ORDER.c.patient_sex, "CS"),
    "AccessionNumber": (ORDER.c.accession_number, "SH"),
    "RequestedProcedureID": (ORDER.c.requested_procedure_id, "SH"),
    "RequestedProcedurePriority": (ORDER.c.priority, "CS"),
    "StudyInstanceUID": (ORDER.c.study_instance_uid, "UI"),
}
STEP_KEYS: dict[str, tuple[ColumnElement, str]] = {
    "ScheduledStationAETitle": (STEP.c.scheduled_station_ae_title, "AE"),
    "Modality": (STEP.c.modality, "CS"),
    "ScheduledPerformingPhysicianName": (STEP.c.scheduled_performing_physician_name_norm, "PN"),
    "ScheduledProcedureStepID": (STEP.c.scheduled_procedure_step_id, "SH"),
    "ScheduledStationName": (STEP.c.scheduled_station_name, "SH"),
}
# Scheduled Procedure Step Status as the worklist shows an open order's steps.
STEP_STATUS = {SCHEDULED: "SCHEDULED", IN_PROGRESS: "STARTED"}


@dataclass
class WorklistQuery:
    # keyword -> raw DICOM string value (only keys with a value: the others are return keys)
    order_keys: dict[str, str] = field(default_factory=dict)
    step_keys: dict[str, str] = field(default_factory=dict)
    start_date: str = ""
    start_time: str = ""
    step_status: str = ""
    limit: int = 10_000
    offset: int = 0
    # The order statuses served: the open ones for the Modality Worklist; UPS-RS asks for
    # the finished ones too (tessera/services/workitems.py).
    order_statuses: tuple[str, ...] = OPEN_STATUSES
    # UPS-RS: only these workitems (SOP Instance UIDs), when given.
    workitem_uids: tuple[str, ...] = ()


def _is_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _string_condition(dialect: str, column: ColumnElement, vr: str, value: str) -> ColumnElement:
    if vr == "PN":
        pattern = normalize_person_name(value) or ""
        if pattern.endswith("*"):
            return wildcard_match(dialect, column, pattern)
        # A name without '=' names the first (alphabetic) group; other groups may follow.
        grouped = wildcard_match(dialect, column, pattern + "=*")
        if _is_wildcard(pattern):
            return or_(wildcard_match(dialect, column, pattern), grouped)
        return or_(column == pattern, grouped)
    if vr in ("AE", "CS", "UI") and "\\" in value:
        values = [v.strip() for v in value.split("\\") if v.strip()]
        return column.in_(values) if values else false()
    if _is_wildcard(value):
        return wildcard_match(dialect, column, value)
    return column == value


def _split_range(value: str, name: str) -> tuple[str, str] | None:
    if "-" not in value:
        return None
    if value.count("-") > 1:
        raise WorklistKeyError(f"{name} {value!r} is not a valid range")
    low, high = (part.strip() for part in value.split("-"))
    if not low and not high:
        raise WorklistKeyError(f"{name}: a range needs at least one end")
    return low, high


def _date(text: str, name: str) -> date:
    parsed = parse_date(text)
    if parsed is None:
        raise WorklistKeyError(f"{name} {text!r} is not a valid date (YYYYMMDD)")
    return parsed


def date_bounds(value: str) -> tuple[date | None, date | None]:
    name = "ScheduledProcedureStepStartDate"
    if _is_wildcard(value) or "\\" in value:
        raise WorklistKeyError(f"{name} {value!r}: dates match single values and ranges only")
    split = _split_range(value, name)
    if split is None:
        day = _date(value, name)
        return day, day
    low = _date(split[0], name) if split[0] else None
    high = _date(split[1], name) if split[1] else None
    if low and high and low > high:
        raise WorklistKeyError(f"{name} {value!r}: the range ends before it starts")
    return low, high


def _time(text: str, name: str) -> tuple[time, time]:
    bounds = time_bounds(text)
    if bounds is None:
        raise WorklistKeyError(f"{name} {text!r} is not a valid time (HHMMSS)")
    return bounds


def time_range(value: str) -> tuple[time | None, time | None]:
    name = "ScheduledProcedureStepStartTime"
    if _is_wildcard(value) or "\\" in value:
        raise WorklistKeyError(f"{name} {value!r}: times match single values and ranges only")
    split = _split_range(value, name)
    if split is None:
        return _time(value, name)
    low = _time(split[0], name)[0] if split[0] else None
    high = _time(split[1], name)[1] if split[1] else None
    if low and high and low > high:
        raise WorklistKeyError(f"{name} {value!r}: the range ends before it starts")
    return low, high


def _start_conditions(query: WorklistQuery) -> list[ColumnElement]:
    day, moment = STEP.c.start_date, STEP.c.start_time
    date_low = date_high = None
    time_low = time_high = None
    if query.start_date:
        date_low, date_high = date_bounds(query.start_date)
    if query.start_time:
        time_low, time_high = time_range(query.start_time)
    conditions: list[ColumnElement] = []
    if not query.start_date:
        # A time alone matches the time of day on any date.
        if time_low is not None:
            conditions.append(moment >= time_low)
        if time_high is not None:
            conditions.append(moment <= time_high)
        return conditions
    # Date and time together are one range from (date low, time low) to (date high, time
    # high) (PS3.4 C.2.2.2.5.1); steps with no time are matched on their date.
    if date_low is not None:
        if time_low is not None:
            conditions.append(
                or_(
                    day > date_low, and_(day == date_low, or_(moment.is_(None), moment >= time_low))
                )
            )
        else:
            conditions.append(day >= date_low)
    if date_high is not None:
        if time_high is not None:
            conditions.append(
                or_(
                    day < date_high,
                    and_(day == date_high, or_(moment.is_(None), moment <= time_high)),
                )
            )
        else:
            conditions.append(day <= date_high)
    return conditions


def _status_condition(value: str) -> ColumnElement:
    wanted = {v.strip().upper() for v in value.split("\\") if v.strip()}
    statuses = [status for status, shown in STEP_STATUS.items() if shown in wanted]
    return ORDER.c.status.in_(statuses) if statuses else false()


def worklist_statement(dialect: str, scope: Scope, query: WorklistQuery):
    conditions: list[ColumnElement] = [
        visible_orders(scope),
        STEP.c.tenant_id == scope.tenant_id,
        ORDER.c.status.in_(query.order_statuses),
    ]
    if query.workitem_uids:
        conditions.append(STEP.c.workitem_uid.in_(query.workitem_uids))
    for keys, table in ((query.order_keys, ORDER_KEYS), (query.step_keys, STEP_KEYS)):
        for keyword, value in keys.items():
            if value.strip() in ("", "*"):
                continue
            column, vr = table[keyword]
            conditions.append(_string_condition(dialect, column, vr, value.strip()))
    conditions.extend(_start_conditions(query))
    if query.step_status.strip() and query.step_status.strip() != "*":
        conditions.append(_status_condition(query.step_status))
    step_columns = [c.label(f"sps_{c.name}") for c in STEP.c]
    return (
        select(ORDER, *step_columns)
        .select_from(STEP)
        .join(ORDER, ORDER.c.id == STEP.c.order_pk)
        .where(*conditions)
        .order_by(STEP.c.start_date, STEP.c.start_time, ORDER.c.id, STEP.c.position)
        .limit(query.limit)
        .offset(query.offset)
    )


def iter_worklist(conn: Connection, scope: Scope, query: WorklistQuery) -> Iterator[RowMapping]:
    """Worklist items (order columns, step columns prefixed `sps_`), earliest first."""
    statement = worklist_statement(conn.dialect.name, scope, query)
    yield from conn.execute(statement).mappings()
