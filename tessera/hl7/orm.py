"""Orders in over HL7 v2: ORM^O01 (general order) and OMI^O23 (imaging order), order control
NW (new), XO (change) and CA (cancel), into the same order store as the REST API
(tessera/services/orders.py: the same validation, idempotency and status history).

Where each order field comes from (IHE Scheduled Workflow, RAD-4 "Procedure Scheduled"):

| order field | HL7 v2 |
|---|---|
| accession_number | IPC-1 (OMI), else OBR-18 (placer field 1), else ORC-3 / ORC-2 (entity ID) |
| patient_id, issuer_of_patient_id | PID-3, first repetition: ID ^^^ assigning authority |
| patient_name | PID-5 (XPN family^given^middle^suffix^prefix, as DICOM PN) |
| patient_birth_date, patient_sex | PID-7 (date part), PID-8 (M, F; O, A, N -> O; U -> empty) |
| referring_physician_name | PV1-8, else ORC-12 (XCN) |
| requested_procedure_id | IPC-2, else OBR-19 (placer field 2) |
| requested_procedure_code, _description | OBR-4 (code ^ text ^ coding system) |
| study_instance_uid | IPC-3, else ZDS-1 (IHE) ; generated when absent |
| priority | TQ1-9, else ORC-7.6 / OBR-27.6: S STAT, A HIGH, R ROUTINE |
| reason_for_requested_procedure | OBR-31 (text, else code) |
| step: scheduled_procedure_step_id | IPC-4, else OBR-20 (filler field 1) |
| step: modality | IPC-5, else OBR-24 (diagnostic service section) |
| step: scheduled_station_name, _ae_title | IPC-7, IPC-9 |
| step: start | TQ1-7, else ORC-7.4 / OBR-27.4, else OBR-7 |
| step: scheduled_performing_physician_name | OBR-34 (technician) |
| comments | NTE-3 of the order group |

Each ORC starts an order group (its OBR, TQ1, IPC, ZDS, NTE follow); one message may carry
several. Every group is applied in ONE transaction: all or none.
"""

from __future__ import annotations

import re

import hl7
from sqlalchemy import Connection

from tessera.archive import Archive
from tessera.hl7.listener import (
    APPLICATION_ERROR,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY,
    Hl7Reject,
    Inbound,
    register,
)
from tessera.index import order_store
from tessera.index.orders import CANCELLED
from tessera.scope import Scope
from tessera.services import orders as o

CONTROLS = ("NW", "XO", "CA")
_PRIORITIES = {"S": "STAT", "A": "HIGH", "R": "ROUTINE"}
_SEXES = {"": "", "M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": ""}
_TS = re.compile(r"^(\d{8})(\d{2})?(\d{2})?(\d{2})?")
# Order fields (JSON names of the REST API) -> the HL7 field they come from, for ERR-2.
_LOCATION = {
    "accession_number": "OBR-18",
    "patient_id": "PID-3",
    "issuer_of_patient_id": "PID-3",
    "patient_name": "PID-5",
    "patient_birth_date": "PID-7",
    "patient_sex": "PID-8",
    "referring_physician_name": "PV1-8",
    "requested_procedure_id": "OBR-19",
    "requested_procedure_description": "OBR-4",
    "requested_procedure_code": "OBR-4",
    "study_instance_uid": "ZDS-1",
    "priority": "TQ1-9",
    "reason_for_requested_procedure": "OBR-31",
    "scheduled_procedure_steps": "OBR-20",
}


def _segments(inbound: Inbound) -> list[tuple[str, object]]:
    return [(str(segment[0]), segment) for segment in inbound.message]


def _groups(inbound: Inbound) -> list[dict[str, list]]:
    """The order groups: each ORC with the OBR/TQ1/IPC/ZDS/NTE segments after it."""
    groups: list[dict[str, list]] = []
    for name, segment in _segments(inbound):
        if name == "ORC":
            groups.append({"ORC": [segment]})
        elif groups and name in ("OBR", "TQ1", "IPC", "ZDS", "NTE"):
            groups[-1].setdefault(name, []).append(segment)
    return groups


class _Group:
    """Field access within one order group (and the message's PID / PV1)."""

    def __init__(self, inbound: Inbound, segments: dict[str, list]) -> None:
        self.inbound = inbound
        self.segments = segments

    def get(self, segment: str, field: int, component: int = 1, repetition: int = 1) -> str:
        found = self.segments.get(segment)
        if found is None:
            if segment not in ("PID", "PV1"):
                return ""
            try:
                found = [self.inbound.message.segment(segment)]
            except KeyError:
                return ""
        return _value(found[0], field, repetition, component)

    def all(self, segment: str) -> list:
        return self.segments.get(segment, [])


def _value(segment: hl7.Segment, field: int, repetition: int = 1, component: int = 1) -> str:
    try:
        value = segment.extract_field(
            segment_num=1, field_num=field, repeat_num=repetition, component_num=component
        )
    except (IndexError, KeyError, AttributeError):
        return ""
    # The library has already replaced the escape sequences (\S\, \F\, ...).
    return str(value).strip() if value else ""


def _person(group: _Group, segment: str, field: int, offset: int) -> str:
    """XPN (offset 0) or XCN (offset 1) as a DICOM PN: family^given^middle^prefix^suffix."""
    parts = [group.get(segment, field, offset + n) for n in (1, 2, 3, 5, 4)]
    parts[0] = parts[0].split("&")[0]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def _timestamp(value: str, location: str) -> str:
    """An HL7 TS/DTM as the ISO date-time the order service reads (the offset dropped:
    worklist times are local to the site)."""
    if not value:
        return ""
    match = _TS.match(value)
    if match is None:
        raise Hl7Reject(
            f"{location}: {value!r} is not a date/time", "AE", DATA_TYPE_ERROR, location
        )
    day, hour, minute, second = match.groups()
    iso = f"{day[:4]}-{day[4:6]}-{day[6:8]}"
    if hour is not None:
        iso += f"T{hour}:{minute or '00'}:{second or '00'}"
    return iso


def _accession(group: _Group) -> str:
    for segment, field in (("IPC", 1), ("OBR", 18), ("ORC", 3), ("ORC", 2)):
        value = group.get(segment, field)
        if value:
            return value
    raise Hl7Reject(
        "no accession number (IPC-1, OBR-18, ORC-3 or ORC-2)",
        "AE",
        REQUIRED_FIELD_MISSING,
        "OBR-18",
    )


def _steps(group: _Group) -> list[dict]:
    start = _timestamp(
        group.get("TQ1", 7)
        or group.get("ORC", 7, 4)
        or group.get("OBR", 27, 4)
        or group.get("OBR", 7),
        "TQ1-7",
    )
    performer = _person(group, "OBR", 34, 1)
    steps = []
    for ipc in group.all("IPC"):
        steps.append(
            {
                "scheduled_procedure_step_id": _value(ipc, 4),
                "modality": _value(ipc, 5),
                "scheduled_station_name": _value(ipc, 7),
                "scheduled_station_ae_title": _value(ipc, 9),
                "scheduled_performing_physician_name": performer,
                "description": group.get("OBR", 4, 2),
                "start": start,
            }
        )
    if not steps and group.all("OBR"):
        steps.append(
            {
                "scheduled_procedure_step_id": group.get("OBR", 20),
                "modality": group.get("OBR", 24),
                "scheduled_performing_physician_name": performer,
                "description": group.get("OBR", 4, 2),
                "start": start,
            }
        )
    return steps


def _order_body(group: _Group) -> dict:
    sex = group.get("PID", 8).upper()
    if sex not in _SEXES:
        raise Hl7Reject(
            f"PID-8: {sex!r} is not a sex (HL7 table 0001)", "AE", TABLE_VALUE_NOT_FOUND, "PID-8"
        )
    priority_code = (
        group.get("TQ1", 9) or group.get("ORC", 7, 6) or group.get("OBR", 27, 6)
    ).upper()
    birth = group.get("PID", 7)
    body: dict = {
        "accession_number": _accession(group),
        "patient_id": group.get("PID", 3),
        "issuer_of_patient_id": group.get("PID", 3, 4).split("&")[0],
        "patient_name": _person(group, "PID", 5, 0),
        "patient_birth_date": birth[:8] if birth else None,
        "patient_sex": _SEXES[sex],
        "referring_physician_name": _person(group, "PV1", 8, 1) or _person(group, "ORC", 12, 1),
        "requested_procedure_id": group.get("IPC", 2) or group.get("OBR", 19),
        "requested_procedure_description": group.get("OBR", 4, 2),
        "priority": _PRIORITIES.get(priority_code[:1], "ROUTINE"),
        "reason_for_requested_procedure": group.get("OBR", 31, 2) or group.get("OBR", 31, 1),
        "scheduled_procedure_steps": _steps(group),
    }
    code = group.get("OBR", 4, 1)
    if code:
        body["requested_procedure_code"] = {
            "code_value": code,
            "code_meaning": group.get("OBR", 4, 2),
            "coding_scheme_designator": group.get("OBR", 4, 3),
        }
    study_uid = group.get("IPC", 3) or group.get("ZDS", 1)
    if study_uid:
        body["study_instance_uid"] = study_uid
    comments = [_value(nte, 3) for nte in group.all("NTE")]
    if any(comments):
        body["comments"] = "\n".join(c for c in comments if c)
    if not body["patient_id"] and not body["patient_name"]:
        raise Hl7Reject("PID-3 or PID-5 is required", "AE", REQUIRED_FIELD_MISSING, "PID-3")
    return body


def _scope(inbound: Inbound) -> Scope:
    """What the sender may touch: its facility's source of its tenant, nothing else."""
    facility = inbound.facility
    only = frozenset({facility.source_pk})
    return Scope(
        tenant_id=facility.tenant_id,
        source_pks=only,
        upload_source_pks=only,
        permissions=frozenset({"read", "orders"}),
        principal=f"hl7:{facility.sending_facility}"[:160],
    )


def _existing(conn: Connection, scope: Scope, accession: str) -> order_store.Order:
    """The order of this accession number in the sender's source (never another's)."""
    assert scope.source_pks is not None
    [source_pk] = scope.source_pks
    order = order_store.find_by_accession(conn, scope.tenant_id, source_pk, "", accession)
    if order is None:
        raise Hl7Reject(
            f"no order with accession number {accession!r}", "AE", UNKNOWN_KEY, "OBR-18"
        )
    return order


def _apply_group(conn: Connection, scope: Scope, control: str, group: _Group) -> str:
    if control == "NW":
        order, created = o.create_order(conn, scope, _order_body(group))
        return f"order {order.id} {'created' if created else 'already exists'}"
    accession = _accession(group)
    order = _existing(conn, scope, accession)
    if control == "CA":
        if order.status == CANCELLED:
            return f"order {order.id} already cancelled"
        reason = group.get("ORC", 16, 2) or group.get("ORC", 16, 1) or "cancelled by HL7 ORC CA"
        o.cancel_order(conn, scope, order.id, reason)
        return f"order {order.id} cancelled"
    body = _order_body(group)
    if body.get("study_instance_uid") not in (None, order.study_instance_uid):
        raise Hl7Reject(
            "the Study Instance UID of an order does not change", "AE", DATA_TYPE_ERROR, "ZDS-1"
        )
    changes = {key: value for key, value in body.items() if key in o.UPDATABLE}
    o.update_order(conn, scope, order.id, changes)  # only while SCHEDULED (else a conflict)
    return f"order {order.id} changed"


def handle_order(archive: Archive, inbound: Inbound) -> str:
    """ORM^O01 / OMI^O23: every order group applied in one transaction, or none."""
    groups = [_Group(inbound, segments) for segments in _groups(inbound)]
    if not groups:
        raise Hl7Reject("no ORC segment", "AE", REQUIRED_FIELD_MISSING, "ORC-1")
    if not inbound.has("PID"):
        raise Hl7Reject("no PID segment", "AE", REQUIRED_FIELD_MISSING, "PID-3")
    scope = _scope(inbound)
    said = []
    try:
        with archive.database.write() as conn:
            for group in groups:
                control = group.get("ORC", 1).upper()
                if control not in CONTROLS:
                    raise Hl7Reject(
                        f"order control {control!r} is not accepted (NW, XO, CA)",
                        "AE",
                        TABLE_VALUE_NOT_FOUND,
                        "ORC-1",
                    )
                said.append(_apply_group(conn, scope, control, group))
    except o.InvalidOrder as exc:
        field = str(exc).split("'")[1] if "'" in str(exc) else ""
        location = _LOCATION.get(field.split("[")[0].split(".")[0], "")
        raise Hl7Reject(str(exc), "AE", DATA_TYPE_ERROR, location) from None
    except o.OrderNotFound as exc:
        raise Hl7Reject(str(exc), "AE", UNKNOWN_KEY, "OBR-18") from None
    except o.OrderConflict as exc:
        raise Hl7Reject(str(exc), "AE", APPLICATION_ERROR, "ORC-1") from None
    return "; ".join(said)


register("ORM^O01", handle_order)
register("OMI^O23", handle_order)
