"""Order use cases, shared by the REST API, the DIMSE worklist and MPPS, and ingest:
create (idempotent on the accession number), get, search, update while scheduled, cancel,
status history, and attaching a study to an order. Every call takes the caller's Scope;
orders of another tenant or of a source the Scope cannot see behave as if they did not exist.

The caller owns the transaction (`archive.database.write()` / `.read()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time

from pydicom.uid import generate_uid
from sqlalchemy import Connection, Row, bindparam, exists, func, select, update

from tessera.index import changes
from tessera.index import order_store as store
from tessera.index.attributes import normalize_person_name
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.models import Instance, Study
from tessera.index.order_coercion import coerce_study_to_order
from tessera.index.order_store import ORDER, STEP, Order, OrderSearch
from tessera.index.orders import (
    CANCELLED,
    DISCONTINUED,
    FINAL,
    IMAGES_READY,
    IN_PROGRESS,
    OPEN_STATUSES,
    REPORTED,
    SCHEDULED,
    STATUSES,
    new_workitem_uid,
)
from tessera.index.sources import source_pk_by_name
from tessera.scope import Scope
from tessera.storage.uids import uid_problem


class OrderNotFound(NotFound):
    """No such order for this caller (missing, another tenant's, or of a hidden source)."""


class OrderConflict(Conflict):
    """The request conflicts with the order's state or with another order."""


class InvalidOrder(InvalidValue):
    """A field is missing or malformed; the message names it."""


PRIORITIES = ("STAT", "HIGH", "ROUTINE", "MEDIUM", "LOW")
SEXES = ("M", "F", "O", "")
# Status changes a caller may ask for (the rest are made by the archive itself).
_MANUAL_TRANSITIONS = {
    IN_PROGRESS: (SCHEDULED,),
    IMAGES_READY: (IN_PROGRESS,),
    REPORTED: (IMAGES_READY,),
    FINAL: (REPORTED,),
    DISCONTINUED: (IN_PROGRESS,),
    CANCELLED: OPEN_STATUSES,
}
_CS_RE = re.compile(r"^[A-Z0-9_ ]*$")

# (field, VR-like kind, max length) of an order's top level; steps below.
_ORDER_TEXT_FIELDS = {
    "patient_id": 64,
    "issuer_of_patient_id": 64,
    "issuer_of_accession_number": 64,
    "requested_procedure_id": 16,
    "requested_procedure_description": 64,
    "reason_for_requested_procedure": 1024,
    "comments": 10240,
}
_PERSON_FIELDS = ("patient_name", "referring_physician_name")
_STEP_TEXT_FIELDS = {
    "scheduled_procedure_step_id": 16,
    "scheduled_station_name": 16,
    "description": 64,
}
_CODE_FIELDS = {
    "code_value": "requested_procedure_code_value",
    "coding_scheme_designator": "requested_procedure_coding_scheme",
    "code_meaning": "requested_procedure_code_meaning",
}
# What an update may change (while SCHEDULED). The accession number, source and Study
# Instance UID identify the order and never change.
UPDATABLE = (
    *_PERSON_FIELDS,
    *(name for name in _ORDER_TEXT_FIELDS if name != "issuer_of_accession_number"),
    "patient_birth_date",
    "patient_sex",
    "priority",
    "requested_procedure_code",
    "scheduled_procedure_steps",
)


def _text(body: dict, name: str, limit: int) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidOrder(f"'{name}' must be a string")
    value = value.strip()
    if len(value) > limit:
        raise InvalidOrder(f"'{name}' is longer than {limit} characters")
    if "\\" in value:
        raise InvalidOrder(f"'{name}' must not contain a backslash")
    return value


def _person(body: dict, name: str) -> str:
    value = _text(body, name, 324)
    for group in value.split("="):
        if len(group) > 64 * 5:
            raise InvalidOrder(f"'{name}' has a component group longer than the PN limit")
    return value


def parse_date_value(value: object, name: str) -> date | None:
    """ISO 8601 'YYYY-MM-DD' or DICOM 'YYYYMMDD'."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidOrder(f"'{name}' must be a date string (YYYY-MM-DD)")
    text = value.strip()
    try:
        if re.fullmatch(r"\d{8}", text):
            return datetime.strptime(text, "%Y%m%d").date()
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidOrder(f"'{name}': {value!r} is not a valid date (YYYY-MM-DD)") from None


def parse_start(value: object, name: str) -> tuple[date | None, time | None]:
    """A step's start: ISO date-time 'YYYY-MM-DDTHH:MM[:SS]' or a date alone."""
    if value in (None, ""):
        return None, None
    if not isinstance(value, str):
        raise InvalidOrder(f"'{name}' must be an ISO 8601 date-time string")
    text = value.strip()
    if len(text) <= 10:
        return parse_date_value(text, name), None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidOrder(
            f"'{name}': {value!r} is not a valid date-time (YYYY-MM-DDTHH:MM:SS)"
        ) from None
    # Worklist times are local to the site, as DICOM DA/TM are: an offset is dropped.
    return moment.date(), moment.time().replace(tzinfo=None)


def _code_string(body: dict, name: str, limit: int = 16) -> str:
    value = _text(body, name, limit).upper()
    if not _CS_RE.match(value):
        raise InvalidOrder(f"'{name}' must be upper-case letters, digits, '_' or space")
    return value


def _steps(value: object) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidOrder("'scheduled_procedure_steps' must be a list of objects")
    steps = []
    for position, item in enumerate(value):
        label = f"scheduled_procedure_steps[{position}]"
        step: dict[str, object] = {
            name: _text(item, name, limit).strip() for name, limit in _STEP_TEXT_FIELDS.items()
        }
        step["scheduled_station_ae_title"] = _text(item, "scheduled_station_ae_title", 16)
        step["modality"] = _code_string(item, "modality")
        performer = _person(item, "scheduled_performing_physician_name")
        step["scheduled_performing_physician_name"] = performer
        step["scheduled_performing_physician_name_norm"] = normalize_person_name(performer)
        step["start_date"], step["start_time"] = parse_start(item.get("start"), f"{label}.start")
        step["scheduled_procedure_step_id"] = step["scheduled_procedure_step_id"] or str(
            position + 1
        )
        step["position"] = position
        steps.append(step)
    return steps


def _order_values(body: dict, partial: bool) -> tuple[dict, list[dict] | None]:
    """Typed column values for the fields present in `body` (all of them unless partial)."""
    values: dict = {}

    def present(name: str) -> bool:
        return not partial or name in body

    for name, limit in _ORDER_TEXT_FIELDS.items():
        if present(name):
            values[name] = _text(body, name, limit)
    for name in _PERSON_FIELDS:
        if present(name):
            values[name] = _person(body, name)
    if "patient_name" in values:
        values["patient_name_norm"] = normalize_person_name(values["patient_name"])
    if present("patient_birth_date"):
        values["patient_birth_date"] = parse_date_value(
            body.get("patient_birth_date"), "patient_birth_date"
        )
    if present("patient_sex"):
        sex = _code_string(body, "patient_sex")
        if sex not in SEXES:
            raise InvalidOrder("'patient_sex' must be M, F, O or empty")
        values["patient_sex"] = sex
    if present("priority"):
        priority = _code_string(body, "priority") or "ROUTINE"
        if priority not in PRIORITIES:
            raise InvalidOrder(f"'priority' must be one of {', '.join(PRIORITIES)}")
        values["priority"] = priority
    if present("requested_procedure_code"):
        code = body.get("requested_procedure_code") or {}
        if not isinstance(code, dict):
            raise InvalidOrder(
                "'requested_procedure_code' must be an object "
                "(code_value, coding_scheme_designator, code_meaning)"
            )
        for key, column in _CODE_FIELDS.items():
            values[column] = _text(code, key, 64)
    steps = (
        _steps(body.get("scheduled_procedure_steps"))
        if present("scheduled_procedure_steps")
        else None
    )
    return values, steps


def sees_source(scope: Scope, source_pk: int) -> bool:
    """Whether the Scope sees a source (all of them when it is not source-locked)."""
    return scope.source_pks is None or source_pk in scope.source_pks


def _visible_source(conn: Connection, scope: Scope, name: str | None) -> int:
    """The source an order is created for: named, else the caller's only source, else
    'default'. A source the caller cannot see or upload to is 'unknown', like a missing one."""
    if name is None and scope.source_pks is not None and len(scope.source_pks) == 1:
        return next(iter(scope.source_pks))
    source_pk = source_pk_by_name(conn, scope.tenant_id, name or "default")
    if source_pk is None or not sees_source(scope, source_pk) or not scope.may_upload_to(source_pk):
        raise InvalidOrder(f"unknown source {name or 'default'!r}")
    return source_pk


def _same_request(order: Order, values: dict) -> bool:
    """Does a repeated create describe the same order (the same patient)?"""
    return (order.patient_id, order.issuer_of_patient_id) == (
        values.get("patient_id", ""),
        values.get("issuer_of_patient_id", ""),
    )


def create_order(conn: Connection, scope: Scope, body: dict) -> tuple[Order, bool]:
    """Create an order from its JSON fields; (order, created). The same accession number
    (within the source and issuer) for the same patient returns the existing order."""
    accession = _text(body, "accession_number", 16)
    if not accession:
        raise InvalidOrder("'accession_number' is required")
    source_name = body.get("source")
    if source_name is not None and not isinstance(source_name, str):
        raise InvalidOrder("'source' must be a string")
    values, steps = _order_values(body, partial=False)
    if not values["patient_id"] and not values["patient_name"]:
        raise InvalidOrder("'patient_id' or 'patient_name' is required")
    study_uid = body.get("study_instance_uid")
    if study_uid is not None:
        problem = uid_problem(study_uid)
        if problem:
            raise InvalidOrder(f"'study_instance_uid': {problem}")
    source_pk = _visible_source(conn, scope, source_name)
    existing = store.find_by_accession(
        conn, scope.tenant_id, source_pk, values["issuer_of_accession_number"], accession
    )
    if existing is not None:
        if _same_request(existing, values):
            return existing, False
        raise OrderConflict(
            f"accession number {accession!r} already belongs to an order for another patient"
        )
    # A UUID-derived UID (PS3.5 B.2): no organisation root needed.
    study_uid = study_uid or generate_uid(prefix=None)
    taken = conn.execute(
        select(ORDER.c.id).where(
            ORDER.c.tenant_id == scope.tenant_id, ORDER.c.study_instance_uid == study_uid
        )
    ).first()
    if taken is not None:
        raise OrderConflict("'study_instance_uid' is already used by another order")
    order_pk = conn.execute(  # type: ignore[index]
        ORDER.insert().values(
            tenant_id=scope.tenant_id,
            source_pk=source_pk,
            status=SCHEDULED,
            accession_number=accession,
            study_instance_uid=study_uid,
            **values,
        )
    ).inserted_primary_key[0]
    _replace_steps(conn, scope.tenant_id, order_pk, steps or [])
    store.record_change(conn, order_pk, None, SCHEDULED, scope.principal, "created")
    return get_order(conn, scope, order_pk), True


def _replace_steps(conn: Connection, tenant_id: int, order_pk: int, steps: list[dict]) -> None:
    # A step keeps its UPS-RS workitem UID (by step ID) when the order's steps are replaced.
    kept = dict(
        conn.execute(
            select(STEP.c.scheduled_procedure_step_id, STEP.c.workitem_uid).where(
                STEP.c.order_pk == order_pk
            )
        ).all()
    )
    conn.execute(STEP.delete().where(STEP.c.order_pk == order_pk))
    if steps:
        conn.execute(
            STEP.insert(),
            [
                {
                    "order_pk": order_pk,
                    "tenant_id": tenant_id,
                    "workitem_uid": kept.get(s["scheduled_procedure_step_id"])
                    or new_workitem_uid(),
                    **s,
                }
                for s in steps
            ],
        )


def parse_order_id(raw: object) -> int:
    """An order ID from a URL or a message; anything else is 'not found'."""
    try:
        value = int(str(raw))
    except ValueError:
        raise OrderNotFound(f"no order {raw!r}") from None
    if value <= 0 or value > 2**62:
        raise OrderNotFound(f"no order {raw!r}")
    return value


def get_order(conn: Connection, scope: Scope, order_id: int, lock: bool = False) -> Order:
    order = store.find_order(conn, scope, order_id, lock=lock)
    if order is None:
        raise OrderNotFound(f"no order {order_id}")
    return order


def search_orders(conn: Connection, scope: Scope, search: OrderSearch) -> list[Order]:
    return store.search_orders(conn, scope, search)


def update_order(conn: Connection, scope: Scope, order_id: int, body: dict) -> Order:
    """Change an order's fields while it is SCHEDULED."""
    unknown = sorted(set(body) - set(UPDATABLE))
    if unknown:
        raise InvalidOrder(
            f"cannot change {', '.join(unknown)} (changeable: {', '.join(UPDATABLE)})"
        )
    if not body:
        raise InvalidOrder("nothing to change")
    values, steps = _order_values(body, partial=True)
    order = get_order(conn, scope, order_id, lock=True)
    if order.status != SCHEDULED:
        raise OrderConflict(f"order {order_id} is {order.status}; only SCHEDULED orders change")
    changed = conn.execute(
        update(ORDER)
        .where(ORDER.c.id == order_id, ORDER.c.status == SCHEDULED)
        .values(updated_at=func.now(), **values)
    ).rowcount
    if not changed:
        raise OrderConflict(f"order {order_id} is no longer SCHEDULED")
    if steps is not None:
        _replace_steps(conn, scope.tenant_id, order_id, steps)
        _note_assignments(conn, order, steps)
    return get_order(conn, scope, order_id)


_ASSIGNED = (
    "scheduled_station_ae_title",
    "scheduled_station_name",
    "scheduled_performing_physician_name",
)


def _note_assignments(conn: Connection, order: Order, steps: list[dict]) -> None:
    """A step whose station or human performer is now set to something new: a
    `workitem.assigned` change (the UPS Assigned event of subscribed AEs, PS3.4 CC.2.4.2)."""
    before = {
        step.scheduled_procedure_step_id: tuple(getattr(step, name) for name in _ASSIGNED)
        for step in order.steps
    }
    uids = dict(
        conn.execute(
            select(STEP.c.scheduled_procedure_step_id, STEP.c.workitem_uid).where(
                STEP.c.order_pk == order.id
            )
        ).all()
    )
    assigned = []
    for step in steps:
        now = tuple(step.get(name) or "" for name in _ASSIGNED)
        step_id = step["scheduled_procedure_step_id"]
        if any(now) and now != before.get(step_id) and uids.get(step_id):
            assigned.append(
                changes.NewChange(
                    order.source_pk,
                    changes.WORKITEM_ASSIGNED,
                    order.study_instance_uid,
                    detail={
                        "order_id": order.id,
                        "workitem_uid": uids[step_id],
                        **dict(zip(_ASSIGNED, now, strict=True)),
                    },
                )
            )
    changes.defer_changes(conn, order.tenant_id, assigned)


def change_status(
    conn: Connection, scope: Scope, order_id: int, to_status: str, reason: str = ""
) -> Order:
    """A status change a person asks for (cancel, reported, final, ...)."""
    if to_status not in STATUSES:
        raise InvalidOrder(f"'status' must be one of {', '.join(STATUSES)}")
    allowed = _MANUAL_TRANSITIONS.get(to_status, ())
    order = get_order(conn, scope, order_id, lock=True)
    if order.status not in allowed:
        raise OrderConflict(f"order {order_id} is {order.status}; it cannot become {to_status}")
    if not store.transition(conn, order_id, allowed, to_status, scope.principal, reason):
        raise OrderConflict(f"order {order_id} changed meanwhile; try again")
    return get_order(conn, scope, order_id)


def cancel_order(conn: Connection, scope: Scope, order_id: int, reason: str = "") -> Order:
    return change_status(conn, scope, order_id, CANCELLED, reason)


def status_history(conn: Connection, scope: Scope, order_id: int) -> list[dict]:
    get_order(conn, scope, order_id)
    return store.history(conn, order_id)


# --- attaching images ------------------------------------------------------------------


@dataclass(frozen=True)
class AttachResult:
    order_id: int
    attached: bool
    reason: str = ""


def _patient_matches(order: Order | Row, patient_id: str | None, issuer: str | None) -> bool:
    if not order.patient_id or not patient_id:
        return True
    if order.patient_id != patient_id:
        return False
    return not (order.issuer_of_patient_id and issuer and order.issuer_of_patient_id != issuer)


def _attach(
    conn: Connection,
    order: Order | Row,
    study_pk: int,
    patient_id: str | None,
    issuer: str | None,
    principal: str,
) -> AttachResult:
    if not _patient_matches(order, patient_id, issuer):
        reason = (
            f"images of patient {patient_id!r} do not match the order's patient "
            f"{order.patient_id!r}: not attached, held for review"
        )
        said = conn.execute(
            select(store.HISTORY.c.id).where(
                store.HISTORY.c.order_pk == order.id, store.HISTORY.c.reason == reason[:512]
            )
        ).first()
        if said is None:  # once, not once per instance of the study
            store.record_change(conn, order.id, order.status, order.status, principal, reason)
        return AttachResult(order.id, False, reason)
    # One conditional update: the study, and SCHEDULED -> IN_PROGRESS (the row is locked).
    new_status = IN_PROGRESS if order.status == SCHEDULED else order.status
    changed = conn.execute(
        update(ORDER)
        .where(ORDER.c.id == order.id, ORDER.c.study_pk.is_(None), ORDER.c.status == order.status)
        .values(study_pk=study_pk, status=new_status, updated_at=func.now())
    ).rowcount
    if changed and new_status != order.status:
        store.record_change(
            conn, order.id, order.status, new_status, principal, "first instance stored"
        )
    if changed:  # viewers see the order's patient and accession values from now on
        coerce_study_to_order(conn, order.id, study_pk)
    return AttachResult(order.id, bool(changed))


def attach_study_to_order(
    conn: Connection, scope: Scope, order_id: int, study_instance_uid: str
) -> AttachResult:
    """Attach a stored study (visible to the Scope) to an open order: the order becomes
    IN_PROGRESS. For uploads that name their order (STOW-RS ?order=, documents, sessions)."""
    order = get_order(conn, scope, order_id, lock=True)
    if order.status not in OPEN_STATUSES:
        raise OrderConflict(f"order {order_id} is {order.status}; images attach to open orders")
    conditions = [
        Study.tenant_id == scope.tenant_id,
        Study.study_instance_uid == study_instance_uid,
    ]
    if scope.source_pks is not None:
        conditions.append(
            exists().where(
                Instance.study_pk == Study.id, Instance.source_pk.in_(sorted(scope.source_pks))
            )
        )
    study = conn.execute(
        select(Study.id, Study.patient_id, Study.issuer_of_patient_id).where(*conditions)
    ).first()
    if study is None:
        raise OrderNotFound(f"no study {study_instance_uid}")
    if order.study_pk is not None and order.study_pk != study.id:
        raise OrderConflict(f"order {order_id} already has another study")
    result = _attach(
        conn, order, study.id, study.patient_id, study.issuer_of_patient_id, scope.principal
    )
    if not result.attached:
        raise OrderConflict(result.reason)
    return result


def attach_upload_to_order(
    conn: Connection,
    scope: Scope,
    order_id: int,
    study_pk: int,
    patient_id: str | None,
    issuer_of_patient_id: str | None,
) -> None:
    """An instance stored for a named order (STOW-RS `?order=`, `tessera upload --order`):
    its study becomes the order's, in the instance's transaction. Raises OrderConflict (the
    caller rolls the instance back) for another patient or when the order has another study."""
    order = get_order(conn, scope, order_id, lock=True)
    if not _patient_matches(order, patient_id, issuer_of_patient_id):
        raise OrderConflict(f"Patient ID {patient_id!r} does not match order {order_id}'s patient")
    if order.study_pk == study_pk:
        return
    if order.status not in OPEN_STATUSES:
        raise OrderConflict(f"order {order_id} is {order.status}; images attach to open orders")
    if order.study_pk is not None:
        raise OrderConflict(f"order {order_id} already has another study")
    _attach(conn, order, study_pk, patient_id, issuer_of_patient_id, scope.principal)


def open_order_for_upload(conn: Connection, scope: Scope, order_id: int) -> Order:
    """Check, before an upload starts, that the order it names is visible and open."""
    order = get_order(conn, scope, order_id)
    if order.status not in OPEN_STATUSES:
        raise OrderConflict(f"order {order_id} is {order.status}; images attach to open orders")
    return order


def attach_on_ingest(
    conn: Connection,
    tenant_id: int,
    source_pk: int,
    study_pk: int,
    study_instance_uid: str,
    accession_number: str | None,
    patient_id: str | None,
    issuer_of_patient_id: str | None,
    principal: str,
) -> AttachResult | None:
    """A stored instance finds its open order of the same source: by Study Instance UID
    (the order's own, as the worklist gave it), else by Accession Number. Indexed lookups
    (the unique Study Instance UID, then the accession number); nothing happens once the
    order has its study."""
    # `study_pk IS NULL` is tested here, not in SQL: most open orders have no study yet,
    # and a planner that takes study_pk as selective (SQLite with migration 0016's
    # statistics) would walk every one of them through ix_order_study.
    key = {"tenant_id": tenant_id, "source_pk": source_pk}
    by_uid = conn.execute(_ORDER_BY_STUDY_UID, {**key, "uid": study_instance_uid}).first()
    if by_uid is not None and by_uid.study_pk is None:
        return _attach(conn, by_uid, study_pk, patient_id, issuer_of_patient_id, principal)
    if not accession_number:
        return None
    candidates = [
        row
        for row in conn.execute(_ORDERS_BY_ACCESSION, {**key, "accession": accession_number})
        if row.study_pk is None
    ]
    if len(candidates) != 1:
        return None  # none, or the accession number names several orders (issuers): do not guess
    return _attach(conn, candidates[0], study_pk, patient_id, issuer_of_patient_id, principal)


# The two lookups of attach_on_ingest, built once (they run for every stored instance).
_OPEN_ORDER = select(
    ORDER.c.id, ORDER.c.status, ORDER.c.study_pk, ORDER.c.patient_id, ORDER.c.issuer_of_patient_id
).where(
    ORDER.c.tenant_id == bindparam("tenant_id"),
    ORDER.c.source_pk == bindparam("source_pk"),
    ORDER.c.status.in_(OPEN_STATUSES),
)
_ORDER_BY_STUDY_UID = _OPEN_ORDER.where(
    ORDER.c.study_instance_uid == bindparam("uid")
).with_for_update()
_ORDERS_BY_ACCESSION = _OPEN_ORDER.where(
    ORDER.c.accession_number == bindparam("accession")
).with_for_update()


# --- reports move orders ----------------------------------------------------------------

# What a report does to the orders of its study: a preliminary report makes them REPORTED,
# a signed one (or a signed addendum) FINAL. Open orders without images, cancelled and
# discontinued ones are left alone; FINAL stays FINAL.
_REPORT_MOVES = {
    REPORTED: (IN_PROGRESS, IMAGES_READY),
    FINAL: (IN_PROGRESS, IMAGES_READY, REPORTED),
}


def report_moves_orders(
    conn: Connection, tenant_id: int, study_pk: int, to_status: str, principal: str, reason: str
) -> list[int]:
    """Move the orders of a study (by its key, so of its tenant only) to REPORTED or FINAL,
    in the caller's transaction (the report's); the IDs of the orders moved."""
    from_statuses = _REPORT_MOVES[to_status]
    candidates = conn.execute(
        select(ORDER.c.id)
        .where(
            ORDER.c.tenant_id == tenant_id,
            ORDER.c.study_pk == study_pk,
            ORDER.c.status.in_(from_statuses),
        )
        .order_by(ORDER.c.id)
        .with_for_update()
    ).scalars()
    return [
        order_pk
        for order_pk in list(candidates)
        if store.transition(conn, order_pk, from_statuses, to_status, principal, reason)
    ]


def complete_orders_of_study(
    conn: Connection, tenant_id: int, study_pk: int, principal: str, reason: str
) -> list[int]:
    """The study is complete now (e.g. a committed upload session held it): its IN_PROGRESS
    orders become IMAGES_READY in the caller's transaction; the IDs moved."""
    candidates = conn.execute(
        select(ORDER.c.id)
        .where(
            ORDER.c.tenant_id == tenant_id,
            ORDER.c.study_pk == study_pk,
            ORDER.c.status == IN_PROGRESS,
        )
        .order_by(ORDER.c.id)
        .with_for_update()
    ).scalars()
    return [
        order_pk
        for order_pk in list(candidates)
        if store.transition(conn, order_pk, (IN_PROGRESS,), IMAGES_READY, principal, reason)
    ]
