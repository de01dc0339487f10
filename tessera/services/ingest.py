"""Ingest one instance: parse -> authorize -> validate -> durable blob -> index row.

The outcome (stored, or the Failure Reason of services/failure_reasons.py and a message) is
decided here, for STOW-RS and C-STORE alike.

The file is durable (fsync + atomic rename) before its row commits, so a crash can leave an
orphan file (swept later), never a row without a file.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydicom.errors import InvalidDicomError
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from tessera.archive import Archive
from tessera.index import attributes as a
from tessera.index.ingest import (
    InstanceRecord,
    RecordOutcome,
    RecordResult,
    blob_in_use,
    record_instance,
    record_more_instances,
    stored_sop_instance_uids,
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
from tessera.storage.blobstore import StorageUnavailable, blob_key_for, put_files
from tessera.storage.dicom_json import instance_metadata
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

    @classmethod
    def internal_error(cls) -> StoreOutcome:
        """An instance that failed in an unforeseen way (the caller logs it): refused with
        0x0110, while the other instances of the request or association go on."""
        return cls(
            False,
            failure_reason=failure_reasons.PROCESSING_FAILURE,
            message="internal error (logged)",
        )


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
        return StoreOutcome.internal_error()
    finally:
        path.unlink(missing_ok=True)


def ingest_files(
    archive: Archive,
    scope: Scope,
    files: list[tuple[Path, str]],
    source_pk: int,
    expected_study_uid: str | None = None,
) -> list[StoreOutcome]:
    """`ingest_file` for several received files (path, SHA-256) with group commit: the files
    that pass their checks are made durable together (each fsynced and renamed, each folder
    fsynced once), then recorded in ONE transaction, a savepoint per instance so that a
    refused row leaves nothing. Outcomes in the order of `files`; every file is consumed.

    Every file is durable before the transaction commits (no row without its file), and the
    caller acknowledges nothing before this returns. Anything unusual (a storage error, a
    failed transaction, e.g. a deadlock) falls back to `ingest_file`'s one-by-one steps, so
    each instance still gets its own verdict.
    """
    outcomes: list[StoreOutcome | None] = [None] * len(files)
    ready: list[tuple[int, _Prepared]] = []
    try:
        for index, (path, sha256) in enumerate(files):
            try:
                prepared = _prepare(archive, scope, path, sha256, source_pk, expected_study_uid)
            except Exception:
                log.exception("ingest failed", extra={"spool_file": str(path)})
                prepared = StoreOutcome.internal_error()
            if isinstance(prepared, StoreOutcome):
                outcomes[index] = prepared
            else:
                ready.append((index, prepared))
        stored = _store_group(archive, scope, [prepared for _, prepared in ready])
        for (index, _), outcome in zip(ready, stored, strict=True):
            outcomes[index] = outcome
    finally:
        for path, _ in files:
            path.unlink(missing_ok=True)
    return [o if o is not None else StoreOutcome.internal_error() for o in outcomes]


def _store_group(archive: Archive, scope: Scope, group: list[_Prepared]) -> list[StoreOutcome]:
    if not group:
        return []
    try:
        put_files(archive.blob_store, [(p.blob_key, p.path) for p in group])
    except Exception:  # each on its own: its own verdict (storage full, unavailable, ...)
        return [_guarded(partial(_store_prepared, archive, scope, p, None)) for p in group]
    try:
        results = _record_group(archive, scope, group)
    except SQLAlchemyError:
        log.warning("group commit failed; recording the instances one by one", exc_info=True)
        return [_guarded(partial(_record_and_conclude, archive, scope, p, None)) for p in group]
    return [
        _guarded(partial(_conclude, archive, scope, p, r, "", None))
        for p, r in zip(group, results, strict=True)
    ]


def _guarded(step: Callable[[], StoreOutcome]) -> StoreOutcome:
    """One instance's step, as its own failure boundary (see `ingest_file`)."""
    try:
        return step()
    except Exception:
        log.exception("ingest failed")
        return StoreOutcome.internal_error()


def _record_group(archive: Archive, scope: Scope, group: list[_Prepared]) -> list[RecordResult]:
    """Record every row in one transaction, each in a savepoint (a refusal rolls back only
    its own). Rows go in (study, series, instance) order, so two groups lock studies in the
    same order (no deadlock on PostgreSQL). The order lookup runs once per study (and
    accession, patient) of the group: the instances after the first find the same answer.

    Several new instances of one series: the first goes through `record_instance` (patient,
    study and series rows, the study lock, the visibility checks), the others, when it was
    CREATED, are added together in one savepoint with multi-row statements
    (`record_more_instances`). An instance whose SOP Instance UID is stored (a resend, a
    conflict), or a later copy of one in the group, goes on its own; so do the others of a
    series whose first was not CREATED, and, when the bulk savepoint fails on a UID stored
    meanwhile (IntegrityError), all of its instances."""
    results: list[RecordResult | None] = [None] * len(group)
    looked_up: set[tuple] = set()
    order = sorted(
        range(len(group)),
        key=lambda i: (
            group[i].record.study_instance_uid,
            group[i].record.series_instance_uid,
            group[i].record.sop_instance_uid,
        ),
    )
    with archive.database.write() as conn:
        rest = _bulk_plan(conn, [p.record for p in group], order)
        for index in order:
            if results[index] is not None:
                continue  # recorded with its series' first instance
            first = _record_one(conn, scope, group[index].record, looked_up)
            results[index] = first
            more = rest.get(index, [])
            if more and first.outcome is RecordOutcome.CREATED and first.study_pk is not None:
                records = [group[i].record for i in more]
                done = _record_more(conn, scope, records, first.study_pk, looked_up)
            else:  # refused, identical, ...: each its own verdict
                done = [_record_one(conn, scope, group[i].record, looked_up) for i in more]
            for other, result in zip(more, done, strict=True):
                results[other] = result
    return [r for r in results if r is not None]


def _bulk_plan(conn, records: list[InstanceRecord], order: list[int]) -> dict[int, list[int]]:
    """For the first new instance (in `order`) of each series with several: the indexes of
    the series' other new instances, to be added right after it. New: its SOP Instance UID
    is not stored (one query for the group) nor met before in `order` (a later copy goes on
    its own, after the first: identical, or compared, as when each went on its own). Only
    instances that record no change go on their own between them, so the change feed
    entries keep the order of `order`."""
    by_series: dict[tuple, list[int]] = {}
    for index in order:
        r = records[index]
        key = (r.study_instance_uid, r.series_instance_uid, r.source_pk)
        by_series.setdefault(key, []).append(index)
    several = [indexes for indexes in by_series.values() if len(indexes) > 1]
    if not several:
        return {}
    uids = [records[i].sop_instance_uid for indexes in several for i in indexes]
    seen = stored_sop_instance_uids(conn, records[0].tenant_id, uids)
    plan: dict[int, list[int]] = {}
    for indexes in by_series.values():
        new = []
        for index in indexes:
            uid = records[index].sop_instance_uid
            if uid not in seen:
                new.append(index)
            seen.add(uid)
        if len(new) > 1:
            plan[new[0]] = new[1:]
    return plan


def _record_one(conn, scope: Scope, record: InstanceRecord, looked_up: set[tuple]) -> RecordResult:
    """`record_instance` in its own savepoint, attached to its order when stored."""
    savepoint = conn.begin_nested()
    result = record_instance(conn, record)
    if result.outcome in _REFUSED:
        savepoint.rollback()
    else:
        if result.study_pk is not None:
            _attach_to_order(conn, scope, record, result.study_pk, looked_up)
        savepoint.commit()
    return result


def _record_more(
    conn, scope: Scope, records: list[InstanceRecord], study_pk: int, looked_up: set[tuple]
) -> list[RecordResult]:
    """New instances of the series whose first was just CREATED (in `study_pk`): together
    in one savepoint, else (a UID stored meanwhile by a concurrent upload) each on its own."""
    savepoint = conn.begin_nested()
    try:
        record_more_instances(conn, records)
    except IntegrityError:
        savepoint.rollback()
        log.info(
            "an instance of the series was stored meanwhile; recording them one by one",
            extra={"series_instance_uid": records[0].series_instance_uid},
        )
        return [_record_one(conn, scope, record, looked_up) for record in records]
    for record in records:  # a no-op unless their accession or patient differs
        _attach_to_order(conn, scope, record, study_pk, looked_up)
    savepoint.commit()
    return [RecordResult(RecordOutcome.CREATED, study_pk=study_pk) for _ in records]


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
    prepared = _prepare(archive, scope, path, sha256, source_pk, expected_study_uid, expected_sop)
    if isinstance(prepared, StoreOutcome):
        return prepared
    return _store_prepared(archive, scope, prepared, order_id)


@dataclass
class _Prepared:
    """An instance that passed every check before storage: its file, row and outcome."""

    path: Path
    blob_key: str
    record: InstanceRecord
    outcome: StoreOutcome


def _prepare(
    archive: Archive,
    scope: Scope,
    path: Path,
    sha256: str,
    source_pk: int,
    expected_study_uid: str | None,
    expected_sop: tuple[str, str] | None = None,
) -> _Prepared | StoreOutcome:
    """Parse and check the file and build its row; a refusal is returned as the outcome."""
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
        dicom_json = instance_metadata(parsed)
    except Exception as exc:
        log.exception(
            "metadata could not be built", extra={"sop_instance_uid": parsed.sop_instance_uid}
        )
        return _failed(outcome, failure_reasons.CANNOT_UNDERSTAND, f"cannot build metadata: {exc}")

    blob_key = blob_key_for(scope.tenant_id, sha256)
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
    return _Prepared(path, blob_key, record, outcome)


def _store_prepared(
    archive: Archive, scope: Scope, prepared: _Prepared, order_id: int | None
) -> StoreOutcome:
    """Make the file durable, then record its row (one transaction)."""
    outcome, blob_key, path = prepared.outcome, prepared.blob_key, prepared.path
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

    return _record_and_conclude(archive, scope, prepared, order_id)


def _record_and_conclude(
    archive: Archive, scope: Scope, prepared: _Prepared, order_id: int | None
) -> StoreOutcome:
    """Record the row of a durable file in its own transaction, and conclude."""
    try:
        result, order_problem = _record(archive, scope, prepared.record, order_id)
    except SQLAlchemyError as exc:
        return _index_write_failed(prepared, exc)
    return _conclude(archive, scope, prepared, result, order_problem, order_id)


def _index_write_failed(prepared: _Prepared, exc: SQLAlchemyError) -> StoreOutcome:
    # The blob stays; if no row references it the sweeper removes it after the grace period.
    log.exception(
        "index write failed", extra={"sop_instance_uid": prepared.record.sop_instance_uid}
    )
    if isinstance(exc, OperationalError):
        prepared.outcome.retry_later = True  # database unreachable or restarting
    return _failed(
        prepared.outcome,
        failure_reasons.PROCESSING_FAILURE,
        "could not record the instance in the index",
    )


def _conclude(
    archive: Archive,
    scope: Scope,
    prepared: _Prepared,
    result: RecordResult,
    order_problem: str,
    order_id: int | None,
) -> StoreOutcome:
    """The outcome of a recorded (or refused) row; removes a blob no row uses."""
    outcome, record, blob_key = prepared.outcome, prepared.record, prepared.blob_key
    if result.outcome is RecordOutcome.DIFFERENT_BYTES:
        assert result.stored_blob_key is not None
        if _same_object(archive, result.stored_blob_key, blob_key):
            # A resend, re-encoded by its sender: the first copy stays.
            archive.blob_store.delete(blob_key)
            outcome.stored = True
            outcome.already_stored = True
            return outcome
        record.compare_content = False
        try:
            result, order_problem = _record(archive, scope, record, order_id)
        except SQLAlchemyError as exc:
            return _index_write_failed(prepared, exc)
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
            f"SeriesInstanceUID {record.series_instance_uid} already belongs to another study",
        )
    if result.released_blob_key:
        archive.blob_store.delete(result.released_blob_key)
    outcome.stored = True
    outcome.already_stored = result.outcome is RecordOutcome.IDENTICAL
    return outcome


# Row outcomes that leave nothing behind: their transaction (or savepoint) is rolled back.
_REFUSED = (
    RecordOutcome.DIFFERENT_BYTES,
    RecordOutcome.CONFLICT,
    RecordOutcome.SERIES_IN_OTHER_STUDY,
    RecordOutcome.NOT_VISIBLE,
)


def _record(
    archive: Archive, scope: Scope, record: InstanceRecord, order_id: int | None
) -> tuple[RecordResult, str]:
    """Record the instance and attach it to its order in one transaction. Returns the
    result and why the named order does not fit ('' when it does); a refusal rolls back."""
    order_problem = ""
    with archive.database.write() as conn:
        result = record_instance(conn, record)
        if result.outcome in _REFUSED:
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


def _attach_to_order(
    conn, scope: Scope, record: InstanceRecord, study_pk: int, looked_up: set[tuple] | None = None
) -> None:
    """The instance's open order (same source, by Study Instance UID or accession number)
    becomes IN_PROGRESS with this study; in the instance's own transaction. `looked_up`
    (one transaction's) skips the lookup for what it already answered: once a study has
    its order (or has none) the answer for the study's next instances is the same."""
    ds = record.dataset
    accession = a.text(ds, "AccessionNumber", 16)
    patient_id = a.text(ds, "PatientID")
    issuer = a.text(ds, "IssuerOfPatientID")
    if looked_up is not None:
        key = (record.source_pk, study_pk, accession, patient_id, issuer)
        if key in looked_up:
            return
        looked_up.add(key)
    attach_on_ingest(
        conn,
        record.tenant_id,
        record.source_pk,
        study_pk,
        record.study_instance_uid,
        accession,
        patient_id,
        issuer,
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
