"""Modality Performed Procedure Step SCP (PS3.4 Annex F): N-CREATE and N-SET.

Thin: the calling peer's Scope (it needs the `upload` right, as a modality that stores does)
and the request go to `tessera.services.mpps`, in one write transaction; a refusal is a
DIMSE failure status with an Error Comment.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pynetdicom import evt

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.scp import audit, statuses
from tessera.scp.association import caller_of
from tessera.services.mpps import (
    INVALID_ATTRIBUTE_VALUE,
    MppsError,
    create_step,
    set_step,
)

log = logging.getLogger(__name__)


def _dataset(event: evt.Event, attribute: str) -> Dataset:
    try:
        dataset = getattr(event, attribute)
        for _element in dataset.iterall():
            pass
    except Exception as exc:
        raise MppsError(INVALID_ATTRIBUTE_VALUE, f"cannot decode the data set: {exc}") from exc
    return dataset


def handle_n_create(event: evt.Event, archive: Archive) -> tuple:
    caller = caller_of(event.assoc)
    uid = str(getattr(event.request, "AffectedSOPInstanceUID", None) or "")
    if not caller.scope.can(permissions.UPLOAD):
        audit.record(archive, event.assoc, caller, "mpps", "denied", uid)
        return statuses.status_dataset(statuses.NOT_AUTHORIZED, "this AE may not send MPPS"), None
    try:
        dataset = _dataset(event, "attribute_list")
        with archive.database.write() as conn:
            result = create_step(conn, caller.scope, uid, dataset, caller.calling_ae_title)
    except MppsError as exc:
        audit.record(archive, event.assoc, caller, "mpps", "failed", uid, {"reason": str(exc)})
        return statuses.status_dataset(exc.status, str(exc)), None
    audit.record(
        archive,
        event.assoc,
        caller,
        "mpps",
        "ok",
        uid,
        {"status": result.status, "order": result.order_id},
    )
    log.info(
        "MPPS created",
        extra={"order_id": result.order_id, "calling_ae_title": caller.calling_ae_title},
    )
    return statuses.SUCCESS, dataset


def handle_n_set(event: evt.Event, archive: Archive) -> tuple:
    caller = caller_of(event.assoc)
    uid = str(getattr(event.request, "RequestedSOPInstanceUID", None) or "")
    if not caller.scope.can(permissions.UPLOAD):
        audit.record(archive, event.assoc, caller, "mpps", "denied", uid)
        return statuses.status_dataset(statuses.NOT_AUTHORIZED, "this AE may not send MPPS"), None
    try:
        modifications = _dataset(event, "modification_list")
        with archive.database.write() as conn:
            result, stored = set_step(
                conn,
                caller.scope,
                uid,
                modifications,
                archive.settings.study_complete_quiet_seconds,
            )
    except MppsError as exc:
        audit.record(archive, event.assoc, caller, "mpps", "failed", uid, {"reason": str(exc)})
        return statuses.status_dataset(exc.status, str(exc)), None
    audit.record(
        archive,
        event.assoc,
        caller,
        "mpps",
        "ok",
        uid,
        {"status": result.status, "order": result.order_id, "images_ready": result.images_ready},
    )
    return statuses.SUCCESS, stored
