"""Ingest one instance: parse -> authorize -> validate -> durable blob -> index row.

The outcome (stored, or the Failure Reason of services/failure_reasons.py and a message) is
decided here, for STOW-RS and C-STORE alike.

The file is durable (fsync + atomic rename) before its row commits, so a crash can leave an
orphan file (swept later), never a row without a file.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.errors import InvalidDicomError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from tessera.archive import Archive
from tessera.index import attributes as a
from tessera.index.ingest import (
    InstanceRecord,
    RecordOutcome,
    RecordResult,
    blob_in_use,
    record_instance,
)
from tessera.index.sources import source_pk_by_name
from tessera.scope import Scope
from tessera.services import failure_reasons
from tessera.services.orders import (
    OrderConflict,
    OrderNotFound,
    attach_on_ingest,
    attach_upload_to_order,
)
from tessera.storage import parse
from tessera.storage.blobstore import StorageUnavailable, blob_key_for
from tessera.storage.dicom_json import build_metadata
from tessera.storage.same_content import same_content

log = logging.getLogger(__name__)


@dataclass
class StoreOutcome:
    """What happened to one instance; feeds the STOW-RS response and C-STORE status."""

    stored: bool
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    failure_reason: int | None = None
    message: str = ""
    already_stored: bool = False
    # Storage (object store, database) was unreachable: nothing was recorded for this
    # instance; STOW-RS answers 503 with Retry-After.
    retry_later: bool = False
    # Stored with a warning (STOW-RS Warning Reason, e.g. 0xB300 when attributes were filled).
    warning_reason: int | None = None
    # Attributes the server filled in (STOW-RS metadata and bulk data requests).
    filled: list[str] = field(default_factory=list)


class UnknownSource(ValueError):
    """The upload names a source the tenant does not have, or the caller may not use."""


def resolve_upload_source(archive: Archive, scope: Scope, name: str | None) -> int:
    """The source key an upload is labelled with ('default' when none is named)."""
    with archive.database.read() as conn:
        source_pk = source_pk_by_name(conn, scope.tenant_id, name or "default")
    if source_pk is None or not scope.may_upload_to(source_pk):
        # Same answer for "missing" and "not yours": a source name reveals nothing.
        raise UnknownSource(
            f"unknown source {name!r} (not defined for this account or not allowed)"
        )
    return source_pk


def ingest_file(
    archive: Archive,
    scope: Scope,
    path: Path,
    sha256: str,
    source_pk: int,
    expected_study_uid: str | None = None,
    expected_sop: tuple[str, str] | None = None,
    order_id: int | None = None,
) -> StoreOutcome:
    """Store the fully received file at `path` (a spool file; consumed in every case).

    `expected_sop` is (SOP Class UID, SOP Instance UID) a C-STORE request announced; a data
    set that says otherwise is refused (0xA900, data set does not match SOP class).
    `order_id` names the order the upload is for: the instance's study becomes the order's,
    and an instance that does not fit it (another patient) is refused (0xC413).

    Never raises: each instance is its own failure boundary, so one instance that fails in an
    unforeseen way is refused (0x0110, logged) and the other parts of a request still are
    stored and acknowledged.
    """
    try:
        return _ingest(
            archive, scope, path, sha256, source_pk, expected_study_uid, expected_sop, order_id
        )
    except Exception:
        log.exception("ingest failed", extra={"spool_file": str(path)})
        return StoreOutcome(
            False,
            failure_reason=failure_reasons.PROCESSING_FAILURE,
            message="internal error (logged)",
        )
    finally:
        path.unlink(missing_ok=True)


def _ingest(
    archive: Archive,
    scope: Scope,
    path: Path,
    sha256: str,
    source_pk: int,
    expected_study_uid: str | None,
    expected_sop: tuple[str, str] | None = None,
    order_id: int | None = None,
) -> StoreOutcome:
    try:
        parsed = parse.parse_part10(path)
    except parse.InstanceRejected as exc:
        return StoreOutcome(
            False,
            exc.sop_class_uid,
            exc.sop_instance_uid,
            failure_reason=failure_reasons.of_defect(exc.defect),
            message=exc.message,
        )
    outcome = StoreOutcome(
        False,
        parsed.sop_class_uid,
        parsed.sop_instance_uid,
        parsed.study_instance_uid,
        parsed.series_instance_uid,
    )
    if not scope.may_upload_to(source_pk):
        return _failed(
            outcome, failure_reasons.SOURCE_NOT_ALLOWED, "not allowed to upload with this source"
        )
    if expected_sop is not None and (parsed.sop_class_uid, parsed.sop_instance_uid) != expected_sop:
        return _failed(
            outcome,
            failure_reasons.MISSING_OR_INVALID_UID,
            f"data set (SOP Class {parsed.sop_class_uid}, SOP Instance "
            f"{parsed.sop_instance_uid}) does not match the request ({expected_sop[0]}, "
            f"{expected_sop[1]})",
        )
    if expected_study_uid is not None and parsed.study_instance_uid != expected_study_uid:
        return _failed(
            outcome,
            failure_reasons.STUDY_UID_MISMATCH,
            f"StudyInstanceUID {parsed.study_instance_uid} does not match the target study "
            f"{expected_study_uid}",
        )
    try:
        dicom_json = build_metadata(
            parsed.dataset,
            parsed.study_instance_uid,
            parsed.series_instance_uid,
            parsed.sop_instance_uid,
            parsed.pixel_data_vr,
        )
    except Exception as exc:
        log.exception(
            "metadata could not be built", extra={"sop_instance_uid": parsed.sop_instance_uid}
        )
        return _failed(outcome, failure_reasons.CANNOT_UNDERSTAND, f"cannot build metadata: {exc}")

    blob_key = blob_key_for(scope.tenant_id, sha256)
    try:
        archive.blob_store.put_file(blob_key, path)
    except StorageUnavailable as exc:
        outcome.retry_later = True
        return _failed(outcome, failure_reasons.OUT_OF_RESOURCES, f"storage unavailable: {exc}")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _failed(outcome, failure_reasons.OUT_OF_RESOURCES, "storage is full")
        log.exception("blob write failed", extra={"blob_key": blob_key})
        return _failed(
            outcome, failure_reasons.PROCESSING_FAILURE, "could not write the file to storage"
        )

    record = InstanceRecord(
        tenant_id=scope.tenant_id,
        source_pk=source_pk,
        dataset=parsed.dataset,
        study_instance_uid=parsed.study_instance_uid,
        series_instance_uid=parsed.series_instance_uid,
        sop_instance_uid=parsed.sop_instance_uid,
        sop_class_uid=parsed.sop_class_uid,
        transfer_syntax_uid=parsed.transfer_syntax_uid,
        blob_key=blob_key,
        size_bytes=parsed.file_size,
        sha256=sha256,
        dicom_json=dicom_json,
        frames=parsed.frames,
        pixel_data_vr=parsed.pixel_data_vr,
        # The uploader's own source counts as visible: their uploads may join each other.
        visible_source_pks=None if scope.source_pks is None else scope.source_pks | {source_pk},
        compare_content=True,  # a resend re-encoded by its sender is the same object
    )
    order_problem = ""
    try:
        result, order_problem = _record(archive, scope, record, order_id)
        if result.outcome is RecordOutcome.DIFFERENT_BYTES:
            assert result.stored_blob_key is not None
            if _same_object(archive, result.stored_blob_key, blob_key):
                # A resend, re-encoded by its sender: the first copy stays.
                archive.blob_store.delete(blob_key)
                outcome.stored = True
                outcome.already_stored = True
                return outcome
            record.compare_content = False
            result, order_problem = _record(archive, scope, record, order_id)
    except SQLAlchemyError as exc:
        # The blob stays; if no row references it the sweeper removes it after the grace period.
        log.exception("index write failed", extra={"sop_instance_uid": parsed.sop_instance_uid})
        if isinstance(exc, OperationalError):
            outcome.retry_later = True  # database unreachable or restarting
        return _failed(
            outcome,
            failure_reasons.PROCESSING_FAILURE,
            "could not record the instance in the index",
        )

    if order_problem:
        with archive.database.read() as conn:
            if not blob_in_use(conn, blob_key):
                archive.blob_store.delete(blob_key)
        return _failed(outcome, failure_reasons.ORDER_MISMATCH, order_problem)
    if result.outcome is RecordOutcome.CONFLICT:
        archive.blob_store.delete(blob_key)  # our content-addressed key; no row uses it
        return _conflict(outcome)
    if result.outcome is RecordOutcome.NOT_VISIBLE:
        # Identical bytes share the content-addressed blob of the hidden instance: delete
        # ours only if no row uses that key.
        with archive.database.read() as conn:
            if not blob_in_use(conn, blob_key):
                archive.blob_store.delete(blob_key)
        return _failed(
            outcome,
            failure_reasons.UID_NOT_AVAILABLE,
            "this Study, Series or SOP Instance UID cannot be used by this uploader",
        )
    if result.outcome is RecordOutcome.SERIES_IN_OTHER_STUDY:
        archive.blob_store.delete(blob_key)
        return _failed(
            outcome,
            failure_reasons.SERIES_IN_OTHER_STUDY,
            f"SeriesInstanceUID {parsed.series_instance_uid} already belongs to another study",
        )
    if result.released_blob_key:
        archive.blob_store.delete(result.released_blob_key)
    outcome.stored = True
    outcome.already_stored = result.outcome is RecordOutcome.IDENTICAL
    return outcome


def _record(
    archive: Archive, scope: Scope, record: InstanceRecord, order_id: int | None
) -> tuple[RecordResult, str]:
    """Record the instance and attach it to its order in one transaction. Returns the
    result and why the named order does not fit ('' when it does); a refusal rolls back."""
    order_problem = ""
    with archive.database.write() as conn:
        result = record_instance(conn, record)
        if result.outcome in (
            RecordOutcome.DIFFERENT_BYTES,
            RecordOutcome.CONFLICT,
            RecordOutcome.SERIES_IN_OTHER_STUDY,
            RecordOutcome.NOT_VISIBLE,
        ):
            conn.rollback()
        elif result.study_pk is not None and order_id is not None:
            order_problem = _attach_to_named_order(conn, scope, record, result.study_pk, order_id)
            if order_problem:
                conn.rollback()
        elif result.study_pk is not None:
            _attach_to_order(conn, scope, record, result.study_pk)
    return result, order_problem


def _same_object(archive: Archive, stored_key: str, received_key: str) -> bool:
    """Is the received file (stored under `received_key`) the object stored under
    `stored_key`, re-encoded? Compared outside any transaction."""
    try:
        with archive.blob_store.open(stored_key) as stored:
            with archive.blob_store.open(received_key) as received:
                return same_content(stored, received)
    except (OSError, InvalidDicomError, ValueError):
        log.exception("stored and received files not compared", extra={"blob_key": stored_key})
        return False


def _attach_to_order(conn, scope: Scope, record: InstanceRecord, study_pk: int) -> None:
    """The instance's open order (same source, by Study Instance UID or accession number)
    becomes IN_PROGRESS with this study; in the instance's own transaction."""
    ds = record.dataset
    attach_on_ingest(
        conn,
        record.tenant_id,
        record.source_pk,
        study_pk,
        record.study_instance_uid,
        a.text(ds, "AccessionNumber", 16),
        a.text(ds, "PatientID"),
        a.text(ds, "IssuerOfPatientID"),
        scope.principal,
    )


def _attach_to_named_order(
    conn, scope: Scope, record: InstanceRecord, study_pk: int, order_id: int
) -> str:
    """Attach to the order the upload names; the reason it does not fit, or ''."""
    try:
        attach_upload_to_order(
            conn,
            scope,
            order_id,
            study_pk,
            a.text(record.dataset, "PatientID"),
            a.text(record.dataset, "IssuerOfPatientID"),
        )
    except (OrderConflict, OrderNotFound) as exc:
        return str(exc)
    return ""


def _failed(outcome: StoreOutcome, reason: int, message: str) -> StoreOutcome:
    outcome.stored = False
    outcome.failure_reason = reason
    outcome.message = message
    return outcome


def _conflict(outcome: StoreOutcome) -> StoreOutcome:
    return _failed(
        outcome,
        failure_reasons.DUPLICATE_CONFLICT,
        "a different object is already stored under this SOPInstanceUID",
    )
