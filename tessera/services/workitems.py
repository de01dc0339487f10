"""UPS-RS workitems (PS3.18 §11, PS3.4 Annex CC) over the order store.

A workitem is one scheduled procedure step of an order: exactly the items the Modality
Worklist serves (`tessera.index.worklist`), so a DICOMweb client and a modality see the same
work. Its Procedure Step State is its order's status (`UPS_STATE`); a state change moves the
order. The Transaction UID of the performer that claimed the order over UPS-RS is kept on
the order's steps and never shown.

Every call takes the caller's Scope; a workitem of another tenant or of a hidden source is
"no workitem", exactly like one that does not exist. The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, RowMapping, select, update

from tessera.index import changes
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.order_store import STEP, Order
from tessera.index.orders import (
    CANCELLED,
    DISCONTINUED,
    FINAL,
    IMAGES_READY,
    IN_PROGRESS,
    REPORTED,
    SCHEDULED,
    STATUSES,
)
from tessera.index.worklist import WorklistQuery, iter_worklist
from tessera.scope import Scope
from tessera.services import orders as o
from tessera.storage.uids import uid_problem

# Procedure Step State (0074,1000) values (PS3.4 CC.1.1).
UPS_SCHEDULED = "SCHEDULED"
UPS_IN_PROGRESS = "IN PROGRESS"
UPS_COMPLETED = "COMPLETED"
UPS_CANCELED = "CANCELED"
UPS_STATES = (UPS_SCHEDULED, UPS_IN_PROGRESS, UPS_COMPLETED, UPS_CANCELED)
# An order's status as a Procedure Step State: the acquisition is done once the images are
# there (IMAGES_READY and after); a cancelled or discontinued order is CANCELED.
UPS_STATE = {
    SCHEDULED: UPS_SCHEDULED,
    IN_PROGRESS: UPS_IN_PROGRESS,
    IMAGES_READY: UPS_COMPLETED,
    REPORTED: UPS_COMPLETED,
    FINAL: UPS_COMPLETED,
    CANCELLED: UPS_CANCELED,
    DISCONTINUED: UPS_CANCELED,
}


class WorkitemNotFound(NotFound):
    """No such workitem for this caller (missing, another tenant's, a hidden source's)."""


class WorkitemConflict(Conflict):
    """The request is inconsistent with the workitem's state (409)."""


class InvalidWorkitemRequest(InvalidValue):
    """A missing or wrong value, Transaction UID included (400); the message names it."""


def order_statuses(states: tuple[str, ...]) -> tuple[str, ...]:
    """The order statuses shown as these Procedure Step States."""
    return tuple(status for status in STATUSES if UPS_STATE[status] in states)


def search_workitems(conn: Connection, scope: Scope, query: WorklistQuery) -> list[RowMapping]:
    """Worklist rows (order columns, step columns prefixed `sps_`), earliest start first."""
    return list(iter_worklist(conn, scope, query))


def find_workitem(conn: Connection, scope: Scope, workitem_uid: str) -> RowMapping:
    rows = search_workitems(
        conn,
        scope,
        WorklistQuery(order_statuses=STATUSES, workitem_uids=(workitem_uid,), limit=1),
    )
    if not rows:
        raise WorkitemNotFound(f"no workitem {workitem_uid}")
    return rows[0]


@dataclass
class Claimed:
    """A workitem with its order locked for a change."""

    row: RowMapping
    order: Order
    state: str
    transaction_uid: str | None


def _claim(conn: Connection, scope: Scope, workitem_uid: str) -> Claimed:
    row = find_workitem(conn, scope, workitem_uid)
    order = o.get_order(conn, scope, row["id"], lock=True)
    transaction_uid = conn.execute(
        select(STEP.c.transaction_uid).where(
            STEP.c.tenant_id == scope.tenant_id, STEP.c.workitem_uid == workitem_uid
        )
    ).scalar_one_or_none()
    return Claimed(row, order, UPS_STATE[order.status], transaction_uid)


def _transaction(value: str | None) -> str:
    if not value:
        raise InvalidWorkitemRequest("Transaction UID (0008,1195) is required")
    problem = uid_problem(value)
    if problem:
        raise InvalidWorkitemRequest(f"Transaction UID (0008,1195) {value!r}: {problem}")
    return value


def _owned(claimed: Claimed, transaction_uid: str) -> None:
    if claimed.transaction_uid is None:
        raise InvalidWorkitemRequest(
            f"the Transaction UID is not correct (C301): workitem {claimed.row['sps_workitem_uid']}"
            " was not claimed over UPS-RS (a modality performs it: MPPS or its images)"
        )
    if claimed.transaction_uid != transaction_uid:
        raise InvalidWorkitemRequest("the Transaction UID is not correct (C301)")


def _move(conn: Connection, scope: Scope, claimed: Claimed, to_status: str, reason: str) -> None:
    """The order's status change, through the orders service (its history and whatever else
    a status change does there)."""
    o.change_status(conn, scope, claimed.order.id, to_status, reason)


def change_state(
    conn: Connection, scope: Scope, workitem_uid: str, state: str, transaction_uid: str | None
) -> str | None:
    """Change UPS State (PS3.4 CC.2.1): claim a SCHEDULED workitem (IN PROGRESS with a new
    Transaction UID), then COMPLETED or CANCELED with the same one. Returns a warning when the
    workitem already is in the requested final state."""
    if state == UPS_SCHEDULED:
        raise InvalidWorkitemRequest(
            "Procedure Step State: a workitem is SCHEDULED only when created (C303)"
        )
    if state not in UPS_STATES:
        raise InvalidWorkitemRequest(
            f"Procedure Step State (0074,1000) {state!r} must be IN PROGRESS, COMPLETED or CANCELED"
        )
    transaction_uid = _transaction(transaction_uid)
    claimed = _claim(conn, scope, workitem_uid)
    current = claimed.state
    if state == UPS_IN_PROGRESS:
        if current == UPS_IN_PROGRESS:
            raise WorkitemConflict(f"workitem {workitem_uid} is already IN PROGRESS (C302)")
        if current != UPS_SCHEDULED:
            raise WorkitemConflict(f"workitem {workitem_uid} is {current}: it may no longer change")
        _move(conn, scope, claimed, IN_PROGRESS, f"claimed over UPS-RS (workitem {workitem_uid})")
        conn.execute(
            update(STEP)
            .where(STEP.c.order_pk == claimed.order.id)
            .values(transaction_uid=transaction_uid)
        )
        return None
    if current == UPS_SCHEDULED:
        raise WorkitemConflict(
            f"workitem {workitem_uid} is not yet IN PROGRESS (C310): claim it first, or ask "
            "for its cancellation (cancelrequest)"
        )
    _owned(claimed, transaction_uid)
    if current == state:
        return f"the workitem is already in the requested state of {state}"
    if current != UPS_IN_PROGRESS:
        raise WorkitemConflict(f"workitem {workitem_uid} is already {current} (C311)")
    if state == UPS_COMPLETED:
        if claimed.order.study_pk is None:
            raise WorkitemConflict(
                f"workitem {workitem_uid} has not met the final state requirements (C304): "
                "no image of its order is stored yet"
            )
        _move(conn, scope, claimed, IMAGES_READY, f"completed over UPS-RS ({workitem_uid})")
    else:
        _move(conn, scope, claimed, CANCELLED, f"canceled over UPS-RS ({workitem_uid})")
    return None


def request_cancellation(
    conn: Connection,
    scope: Scope,
    workitem_uid: str,
    reason: str = "",
    requested: dict | None = None,
) -> str | None:
    """Request UPS Cancel (PS3.4 CC.2.2): a SCHEDULED workitem is canceled at once (its order
    becomes CANCELLED). An IN PROGRESS one belongs to its performer: the request is passed on
    as a UPS Cancel Requested event (`workitem.cancel_requested` in the change feed,
    `requested` its Requesting AE and contact) when an AE is subscribed to the workitem, else
    refused (nobody would hear of it). Returns a warning when already CANCELED."""
    claimed = _claim(conn, scope, workitem_uid)
    if claimed.state == UPS_CANCELED:
        return "the workitem is already in the requested state of CANCELED"
    if claimed.state == UPS_IN_PROGRESS:
        from tessera.services.ups_events import has_subscriber

        if not has_subscriber(conn, scope.tenant_id, workitem_uid):
            raise WorkitemConflict(
                f"workitem {workitem_uid} is IN PROGRESS: its performer cancels it (Change "
                "Workitem State with its Transaction UID); no AE is subscribed to it, so the "
                "request cannot be passed on"
            )
        detail = {
            "order_id": claimed.order.id,
            "workitem_uid": workitem_uid,
            "reason": reason,
            **(requested or {}),
        }
        changes.defer_change(
            conn,
            scope.tenant_id,
            claimed.order.source_pk,
            changes.WORKITEM_CANCEL_REQUESTED,
            claimed.order.study_instance_uid,
            detail=detail,
        )
        return None
    if claimed.state == UPS_COMPLETED:
        raise WorkitemConflict(f"workitem {workitem_uid} is already COMPLETED (C311)")
    text = "cancellation requested over UPS-RS" + (f": {reason}" if reason else "")
    _move(conn, scope, claimed, CANCELLED, text)
    return None


@dataclass(frozen=True)
class Progress:
    """Procedure Step Progress Information (0074,1002) as Update Workitem gives it: the
    progress (a DS, percent done) and its description; None where the request has none."""

    progress: str | None
    description: str | None


def update_workitem(
    conn: Connection,
    scope: Scope,
    workitem_uid: str,
    transaction_uid: str | None,
    changes: dict,
    progress: Progress | None = None,
) -> None:
    """Update Workitem (PS3.4 CC.2.6, N-SET): `changes` are order fields (the REST API's,
    `scheduled_procedure_step` for this workitem's step). A SCHEDULED workitem changes
    without a Transaction UID; an IN PROGRESS one needs its owner's, and its scheduled
    attributes no longer change (the order's rule), but its owner reports `progress`."""
    claimed = _claim(conn, scope, workitem_uid)
    if claimed.state in (UPS_COMPLETED, UPS_CANCELED):
        raise InvalidWorkitemRequest(
            f"workitem {workitem_uid} is {claimed.state}: it may no longer be updated (C300)"
        )
    if claimed.state == UPS_IN_PROGRESS:
        _owned(claimed, _transaction(transaction_uid))
        if changes:
            raise WorkitemConflict(
                f"workitem {workitem_uid} is IN PROGRESS: its scheduled attributes "
                f"({', '.join(sorted(changes))}) change only while it is SCHEDULED"
            )
        if progress is not None:
            _report_progress(conn, scope, claimed, progress)
        return
    if transaction_uid:
        raise InvalidWorkitemRequest(
            f"workitem {workitem_uid} is SCHEDULED: it has no Transaction UID yet (C301)"
        )
    if progress is not None:
        raise WorkitemConflict(
            f"workitem {workitem_uid} is SCHEDULED: progress is reported by its performer "
            "once it is IN PROGRESS"
        )
    if not changes:
        return
    step_change = changes.pop("scheduled_procedure_step", None)
    if step_change is not None:
        changes["scheduled_procedure_steps"] = _steps_with(claimed, step_change)
    o.update_order(conn, scope, claimed.order.id, changes)


def _report_progress(conn: Connection, scope: Scope, claimed: Claimed, progress: Progress) -> None:
    """Keep the performer's progress on its step; a change goes to the change feed
    (`workitem.progress`: the UPS Progress Report of subscribed AEs)."""
    uid = claimed.row["sps_workitem_uid"]
    before = (claimed.row["sps_progress"], claimed.row["sps_progress_description"])
    after = (
        before[0] if progress.progress is None else progress.progress,
        before[1] if progress.description is None else progress.description,
    )
    if after == before:
        return
    conn.execute(
        update(STEP)
        .where(STEP.c.tenant_id == scope.tenant_id, STEP.c.workitem_uid == uid)
        .values(progress=after[0], progress_description=after[1])
    )
    changes.defer_change(
        conn,
        scope.tenant_id,
        claimed.order.source_pk,
        changes.WORKITEM_PROGRESS,
        claimed.order.study_instance_uid,
        detail={
            "order_id": claimed.order.id,
            "workitem_uid": uid,
            "progress": after[0],
            "progress_description": after[1],
        },
    )


def _steps_with(claimed: Claimed, step_change: dict) -> list[dict]:
    """The order's steps as REST fields, this workitem's step changed."""
    steps = []
    for step in claimed.order.steps:
        start = None
        if step.start_date is not None:
            start = step.start_date.isoformat()
            if step.start_time is not None:
                start += "T" + step.start_time.isoformat()
        fields = {
            "scheduled_procedure_step_id": step.scheduled_procedure_step_id,
            "start": start,
            "modality": step.modality,
            "scheduled_station_ae_title": step.scheduled_station_ae_title,
            "scheduled_station_name": step.scheduled_station_name,
            "scheduled_performing_physician_name": step.scheduled_performing_physician_name,
            "description": step.description,
        }
        if step.scheduled_procedure_step_id == claimed.row["sps_scheduled_procedure_step_id"]:
            fields.update(step_change)
        steps.append(fields)
    return steps


def create_workitem(
    conn: Connection, scope: Scope, workitem_uid: str, body: dict
) -> tuple[Order, str]:
    """Create Workitem (PS3.4 CC.2.5, N-CREATE): a new order with one scheduled step whose
    workitem UID is `workitem_uid`. An existing workitem UID, or an accession number that
    already names an order of the source, is a conflict (nothing is written)."""
    problem = uid_problem(workitem_uid)
    if problem:
        raise InvalidWorkitemRequest(f"workitem UID {workitem_uid!r}: {problem}")
    taken = conn.execute(
        select(STEP.c.id).where(
            STEP.c.tenant_id == scope.tenant_id, STEP.c.workitem_uid == workitem_uid
        )
    ).first()
    if taken is not None:
        # Also for a workitem the caller cannot see: UIDs are not guessable, and a second
        # workitem with the same UID cannot be made either way.
        raise WorkitemConflict(f"workitem {workitem_uid} already exists")
    order, created = o.create_order(conn, scope, body)
    if not created:
        raise WorkitemConflict(
            f"accession number {order.accession_number!r} already names order {order.id} "
            "(a workitem is created once)"
        )
    conn.execute(update(STEP).where(STEP.c.order_pk == order.id).values(workitem_uid=workitem_uid))
    return order, workitem_uid
