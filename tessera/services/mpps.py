"""Modality Performed Procedure Step (PS3.4 Annex F) as the archive keeps it: N-CREATE
records an IN PROGRESS step and moves its order to IN_PROGRESS; N-SET updates it until it is
COMPLETED (the order becomes IMAGES_READY once every referenced instance is stored) or
DISCONTINUED (the order is DISCONTINUED). The performed series and instance references are
kept for the "study complete" decision.

The order is found through the Scheduled Step Attributes Sequence (Study Instance UID, else
Accession Number) among the orders the caller's Scope sees; an MPPS that names no visible
order is kept unlinked ("unscheduled").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
from pydicom.dataset import Dataset
from sqlalchemy import Connection, delete, func, select, update

from tessera.index.order_store import ORDER, transition, visible_orders
from tessera.index.orders import (
    DISCONTINUED,
    IN_PROGRESS,
    OPEN_STATUSES,
    SCHEDULED,
    PerformedInstance,
    PerformedProcedureStep,
)
from tessera.scope import Scope
from tessera.services.study_complete import complete_ready_orders

log = logging.getLogger(__name__)

MPPS = PerformedProcedureStep.__table__
PERFORMED = PerformedInstance.__table__
MPPS_IN_PROGRESS = "IN PROGRESS"
MPPS_COMPLETED = "COMPLETED"
MPPS_DISCONTINUED = "DISCONTINUED"
MPPS_STATUSES = (MPPS_IN_PROGRESS, MPPS_COMPLETED, MPPS_DISCONTINUED)


class MppsError(Exception):
    """Refused with a DIMSE status (PS3.4 F.7.2.1.2, F.7.2.2.2) and a comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status


NO_SUCH_ATTRIBUTE = 0x0105
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_OBJECT_INSTANCE = 0x0112
MISSING_ATTRIBUTE_VALUE = 0x0121


@dataclass(frozen=True)
class MppsResult:
    sop_instance_uid: str
    status: str
    order_id: int | None
    images_ready: bool = False


def _text(dataset: Dataset, keyword: str) -> str:
    try:
        value = dataset.get(keyword)
    except Exception:
        raise MppsError(INVALID_ATTRIBUTE_VALUE, f"{keyword} cannot be read") from None
    return "" if value is None else str(value).strip()


def _linked_order(conn: Connection, scope: Scope, dataset: Dataset) -> int | None:
    """The visible open order a step performs (Scheduled Step Attributes Sequence)."""
    for item in dataset.get("ScheduledStepAttributesSequence") or []:
        for column, keyword in (
            (ORDER.c.study_instance_uid, "StudyInstanceUID"),
            (ORDER.c.accession_number, "AccessionNumber"),
        ):
            value = _text(item, keyword)
            if not value:
                continue
            found = conn.execute(
                select(ORDER.c.id)
                .where(visible_orders(scope), column == value, ORDER.c.status.in_(OPEN_STATUSES))
                .limit(2)
            ).all()
            if len(found) == 1:
                return found[0].id
    return None


def _references(dataset: Dataset) -> list[dict]:
    """Performed Series Sequence > Referenced Image / Non-Image Composite SOP Instances."""
    found: dict[str, dict] = {}
    for series in dataset.get("PerformedSeriesSequence") or []:
        series_uid = _text(series, "SeriesInstanceUID")
        for keyword in (
            "ReferencedImageSequence",
            "ReferencedNonImageCompositeSOPInstanceSequence",
        ):
            for item in series.get(keyword) or []:
                uid = _text(item, "ReferencedSOPInstanceUID")
                if uid:
                    found[uid] = {
                        "sop_instance_uid": uid[:64],
                        "series_instance_uid": series_uid[:64],
                        "sop_class_uid": _text(item, "ReferencedSOPClassUID")[:64],
                    }
    return list(found.values())


def _save_references(conn: Connection, mpps_pk: int, dataset: Dataset) -> None:
    if "PerformedSeriesSequence" not in dataset:
        return
    conn.execute(delete(PERFORMED).where(PERFORMED.c.mpps_pk == mpps_pk))
    references = _references(dataset)
    if references:
        conn.execute(PERFORMED.insert(), [{"mpps_pk": mpps_pk, **r} for r in references])


def _status_of(dataset: Dataset) -> str:
    status = _text(dataset, "PerformedProcedureStepStatus").upper()
    if status not in MPPS_STATUSES:
        raise MppsError(
            INVALID_ATTRIBUTE_VALUE,
            f"PerformedProcedureStepStatus {status!r} is not one of {', '.join(MPPS_STATUSES)}",
        )
    return status


def _json(dataset: Dataset) -> str:
    return orjson.dumps(dataset.to_json_dict(bulk_data_threshold=10**9)).decode()


def create_step(
    conn: Connection, scope: Scope, sop_instance_uid: str, dataset: Dataset, station: str
) -> MppsResult:
    """N-CREATE: a new step IN PROGRESS; its order (if any) becomes IN_PROGRESS."""
    if not sop_instance_uid:
        raise MppsError(MISSING_ATTRIBUTE_VALUE, "the Affected SOP Instance UID is required")
    if _status_of(dataset) != MPPS_IN_PROGRESS:
        raise MppsError(INVALID_ATTRIBUTE_VALUE, "an MPPS is created IN PROGRESS (PS3.4 F.7.2.1.2)")
    exists = conn.execute(
        select(MPPS.c.id).where(
            MPPS.c.tenant_id == scope.tenant_id, MPPS.c.sop_instance_uid == sop_instance_uid
        )
    ).first()
    if exists is not None:
        raise MppsError(DUPLICATE_SOP_INSTANCE, "this MPPS SOP Instance UID already exists")
    order_pk = _linked_order(conn, scope, dataset)
    study_uid = ""
    for item in dataset.get("ScheduledStepAttributesSequence") or []:
        study_uid = study_uid or _text(item, "StudyInstanceUID")
    mpps_pk = conn.execute(  # type: ignore[index]
        MPPS.insert().values(
            tenant_id=scope.tenant_id,
            sop_instance_uid=sop_instance_uid,
            status=MPPS_IN_PROGRESS,
            order_pk=order_pk,
            study_instance_uid=study_uid[:64],
            performed_station_ae_title=(_text(dataset, "PerformedStationAETitle") or station)[:16],
            dicom_json=_json(dataset),
        )
    ).inserted_primary_key[0]
    _save_references(conn, mpps_pk, dataset)
    if order_pk is not None:
        transition(conn, order_pk, (SCHEDULED,), IN_PROGRESS, scope.principal, "MPPS IN PROGRESS")
    return MppsResult(sop_instance_uid, MPPS_IN_PROGRESS, order_pk)


def set_step(
    conn: Connection,
    scope: Scope,
    sop_instance_uid: str,
    modifications: Dataset,
    quiet_seconds: float,
) -> tuple[MppsResult, Dataset]:
    """N-SET: update an IN PROGRESS step; COMPLETED / DISCONTINUED are final."""
    row = conn.execute(
        select(MPPS)
        .where(MPPS.c.tenant_id == scope.tenant_id, MPPS.c.sop_instance_uid == sop_instance_uid)
        .with_for_update()
    ).first()
    if row is not None and row.order_pk is not None:
        visible = conn.execute(
            select(ORDER.c.id).where(ORDER.c.id == row.order_pk, visible_orders(scope))
        ).first()
        if visible is None:
            row = None  # another site's step: as if it did not exist
    if row is None:
        raise MppsError(NO_SUCH_OBJECT_INSTANCE, "no such MPPS SOP Instance")
    if row.status != MPPS_IN_PROGRESS:
        raise MppsError(
            PROCESSING_FAILURE,
            f"the MPPS is {row.status} and may no longer be updated",
        )
    status = row.status
    if "PerformedProcedureStepStatus" in modifications:
        status = _status_of(modifications)
    stored = Dataset.from_json(orjson.loads(row.dicom_json))
    for element in modifications:
        stored[element.tag] = element
    conn.execute(
        update(MPPS)
        .where(MPPS.c.id == row.id)
        .values(status=status, dicom_json=_json(stored), updated_at=func.now())
    )
    _save_references(conn, row.id, modifications)
    ready = False
    if row.order_pk is not None:
        if status == MPPS_DISCONTINUED:
            transition(
                conn,
                row.order_pk,
                (SCHEDULED, IN_PROGRESS),
                DISCONTINUED,
                scope.principal,
                "MPPS DISCONTINUED",
            )
        elif status == MPPS_COMPLETED:
            ready = bool(complete_ready_orders(conn, quiet_seconds, order_pk=row.order_pk))
    return MppsResult(sop_instance_uid, status, row.order_pk, ready), stored
