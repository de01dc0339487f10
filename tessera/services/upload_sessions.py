"""Upload sessions ("upload later"): collect instances now, make them part of the archive
later, in one transaction, or throw them away.

- `open_session`: a new session of the caller (tenant, owner = the caller's principal,
  upload source, description, expiry).
- `add_file`: one received Part 10 file into an open session: parsed and checked like any
  upload, its bytes made durable in the blob store, its row in `upload_session_instance`
  (tessera/index/upload_sessions.py) - nothing in the archive's tables, so it stays
  invisible to every query and retrieval. Re-sending an instance already in the session is
  a no-op; a different object under the same SOP Instance UID replaces it in the session.
- `commit`: every instance recorded in the archive in ONE transaction (the same
  `record_instance` as ingest), all or nothing: when one cannot be recorded (a conflict
  with a stored object, a study of sources the caller cannot see) nothing is, and the answer
  says which and why. An expired or discarded session cannot be committed.
- `discard`: the session's rows are deleted at once; its files become orphans that the
  sweeper removes after its grace period (the same path as every orphan file, so a file
  another upload has just stored under the same content key is never deleted under it).
- `expire_sessions` (run by the sweeper): open sessions past their expiry are closed and
  emptied the same way.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import orjson
import pydicom
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tessera.archive import Archive
from tessera.index import attributes as a
from tessera.index import changes
from tessera.index import upload_sessions as u
from tessera.index.clock import as_utc, iso, utcnow
from tessera.index.ingest import (
    InstanceRecord,
    RecordOutcome,
    instance_attributes,
    record_instance,
    record_more_of_series,
    stored_sop_instance_uids,
)
from tessera.index.models import Source, Study
from tessera.index.study_completion import UPLOAD_SESSION, complete_study
from tessera.scope import Scope
from tessera.services import failure_reasons
from tessera.services.ingest import StoreOutcome, UnknownSource, resolve_upload_source
from tessera.services.orders import attach_on_ingest, complete_orders_of_study
from tessera.storage import parse
from tessera.storage.blobstore import blob_key_for
from tessera.storage.dicom_json import instance_metadata

log = logging.getLogger(__name__)
MAX_DESCRIPTION = 1024


class SessionProblem(Exception):
    """The operation cannot be done; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def open_session(
    archive: Archive,
    scope: Scope,
    description: str = "",
    source: str | None = None,
    expires_in_seconds: int | None = None,
) -> u.SessionRow:
    if len(description) > MAX_DESCRIPTION:
        raise SessionProblem(400, f"description is longer than {MAX_DESCRIPTION} characters")
    longest = archive.settings.upload_session_ttl_seconds
    ttl = longest if expires_in_seconds is None else expires_in_seconds
    if not 0 < ttl <= longest:
        raise SessionProblem(400, f"expires_in_seconds must be between 1 and {longest}")
    try:
        source_pk = resolve_upload_source(archive, scope, source)
    except UnknownSource as exc:
        raise SessionProblem(400, str(exc)) from exc
    return _create(archive, scope, source_pk, description, ttl)


def open_received_session(
    archive: Archive, scope: Scope, source_pk: int, calling_ae_title: str, description: str
) -> u.SessionRow:
    """A session a staged DIMSE peer's association fills (owner: the peer's principal); it is
    listed for every user of the tenant who reads and uploads to `source_pk`."""
    ttl = archive.settings.upload_session_ttl_seconds
    return _create(archive, scope, source_pk, description[:MAX_DESCRIPTION], ttl, calling_ae_title)


def _create(
    archive: Archive,
    scope: Scope,
    source_pk: int,
    description: str,
    ttl: int,
    received_from: str | None = None,
) -> u.SessionRow:
    now = utcnow()
    with archive.database.write() as conn:
        return u.create_session(
            conn,
            scope,
            uuid.uuid4().hex,
            source_pk,
            description,
            now,
            now + timedelta(seconds=ttl),
            received_from,
        )


def usable_session(archive: Archive, scope: Scope, public_id: str) -> u.SessionRow:
    """The caller's open, unexpired session (404 when not the caller's, 409 when closed)."""
    with archive.database.read() as conn:
        session = u.find_session(conn, scope, public_id)
    return _check_open(scope, session, public_id)


def _check_open(scope: Scope, session: u.SessionRow | None, public_id: str) -> u.SessionRow:
    if session is None or not scope.may_upload_to(session.source_pk):
        raise SessionProblem(404, f"upload session {public_id} not found")
    if session.state != u.OPEN:
        raise SessionProblem(409, f"upload session {public_id} is {session.state}")
    if as_utc(session.expires_at) <= utcnow():
        raise SessionProblem(
            409, f"upload session {public_id} expired at {as_utc(session.expires_at).isoformat()}"
        )
    return session


def add_file(
    archive: Archive,
    scope: Scope,
    public_id: str,
    path: Path,
    sha256: str,
    expected_study_uid: str | None = None,
) -> StoreOutcome:
    """Store the received file at `path` (consumed) into the session."""
    try:
        return _add(archive, scope, public_id, path, sha256, expected_study_uid)
    except SessionProblem as exc:  # the session filled up, closed or expired meanwhile
        reason = (
            failure_reasons.OUT_OF_RESOURCES
            if exc.status == 413
            else failure_reasons.PROCESSING_FAILURE
        )
        return StoreOutcome(False, failure_reason=reason, message=exc.message)
    except Exception:  # each instance its own failure boundary, as ingest_file
        log.exception("adding to an upload session failed", extra={"spool_file": str(path)})
        return StoreOutcome.internal_error()
    finally:
        path.unlink(missing_ok=True)


def _add(
    archive: Archive,
    scope: Scope,
    public_id: str,
    path: Path,
    sha256: str,
    expected_study_uid: str | None,
) -> StoreOutcome:
    parsed, outcome = parse_received(path)
    if parsed is None:
        return outcome
    if expected_study_uid is not None and parsed.study_instance_uid != expected_study_uid:
        return _failed(
            outcome,
            failure_reasons.STUDY_UID_MISMATCH,
            f"StudyInstanceUID {parsed.study_instance_uid} does not match the target study "
            f"{expected_study_uid}",
        )
    return add_parsed(archive, scope, public_id, parsed, outcome, path, sha256)


def parse_received(path: Path) -> tuple[parse.ParsedInstance | None, StoreOutcome]:
    """The received file's header, or None and the refusal (as STOW-RS would refuse it)."""
    try:
        parsed = parse.parse_part10(path)
    except parse.InstanceRejected as exc:
        return None, StoreOutcome(
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
    return parsed, outcome


def add_parsed(
    archive: Archive,
    scope: Scope,
    public_id: str,
    parsed: parse.ParsedInstance,
    outcome: StoreOutcome,
    path: Path,
    sha256: str,
) -> StoreOutcome:
    """Store the parsed file at `path` (not consumed) into the open session `public_id`;
    SessionProblem when the session is not the caller's, closed, expired or full."""
    try:
        dicom_json = instance_metadata(parsed)
    except Exception as exc:
        log.exception(
            "metadata could not be built", extra={"sop_instance_uid": parsed.sop_instance_uid}
        )
        return _failed(outcome, failure_reasons.CANNOT_UNDERSTAND, f"cannot build metadata: {exc}")
    blob_key = blob_key_for(scope.tenant_id, sha256)
    try:
        archive.blob_store.put_file(blob_key, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _failed(outcome, failure_reasons.OUT_OF_RESOURCES, "storage is full")
        log.exception("blob write failed", extra={"blob_key": blob_key})
        return _failed(
            outcome, failure_reasons.PROCESSING_FAILURE, "could not write the file to storage"
        )
    dataset = parsed.dataset
    values = {
        "study_instance_uid": parsed.study_instance_uid,
        "series_instance_uid": parsed.series_instance_uid,
        "sop_instance_uid": parsed.sop_instance_uid,
        "sop_class_uid": parsed.sop_class_uid,
        "transfer_syntax_uid": parsed.transfer_syntax_uid,
        "patient_id": str(dataset.get("PatientID", "") or "")[:64],
        "patient_name": str(dataset.get("PatientName", "") or "")[:324],
        "blob_key": blob_key,
        "size_bytes": parsed.file_size,
        "sha256": sha256,
        "dicom_json": dicom_json,
        "frame_offsets": None if parsed.frames is None else orjson.dumps(parsed.frames),
        "pixel_data_vr": parsed.pixel_data_vr,
        "index_values": encode_index_values(dataset),
    }
    # The session row is locked while the instance is added, so a commit or discard running
    # at the same time sees the session either before or after this instance.
    with archive.database.write() as conn:
        session = _check_open(scope, u.find_session(conn, scope, public_id, lock=True), public_id)
        existing = u.session_instance(conn, session.pk, parsed.sop_instance_uid)
        if existing is not None and existing.sha256 == sha256:
            outcome.stored = outcome.already_stored = True
            return outcome
        limit = archive.settings.max_session_bytes
        used = u.session_size(conn, session.pk) - (0 if existing is None else _size(conn, existing))
        if used + parsed.file_size > limit:
            raise SessionProblem(413, f"the upload session would exceed its limit of {limit} bytes")
        if existing is not None:
            u.remove_instance(conn, existing.id)  # its file is left to the sweeper
        u.add_instance(conn, session.pk, values)
    outcome.stored = True
    return outcome


def _size(conn, existing) -> int:
    row = conn.execute(
        select(u.UploadSessionInstance.size_bytes).where(u.UploadSessionInstance.id == existing.id)
    ).scalar_one()
    return int(row)


def _failed(outcome: StoreOutcome, reason: int, message: str) -> StoreOutcome:
    outcome.stored = False
    outcome.failure_reason = reason
    outcome.message = message
    return outcome


@dataclass
class SessionView:
    session: u.SessionRow
    source: str
    instances: int = 0
    size_bytes: int = 0
    studies: list[dict] = field(default_factory=list)
    patients: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        s = self.session
        return {
            "id": s.public_id,
            "state": s.state,
            "description": s.description,
            "source": self.source,
            "owner": s.owner,
            "received_from": s.received_from,
            "created_at": as_utc(s.created_at).isoformat(),
            "expires_at": as_utc(s.expires_at).isoformat(),
            "closed_at": iso(s.closed_at),
            "instances": self.instances,
            "size_bytes": self.size_bytes,
            "patients": self.patients,
            "studies": self.studies,
            "problems": self.problems,
        }


def _source_name(conn, source_pk: int) -> str:
    return conn.execute(select(Source.name).where(Source.id == source_pk)).scalar_one()


def describe(archive: Archive, scope: Scope, public_id: str) -> SessionView:
    """What the session holds: patients, studies, series, counts, sizes, problems."""
    with archive.database.read() as conn:
        session = u.find_session(conn, scope, public_id)
        if session is None or not scope.may_upload_to(session.source_pk):
            raise SessionProblem(404, f"upload session {public_id} not found")
        view = SessionView(session, _source_name(conn, session.source_pk))
        rows = u.series_summary(conn, session.pk)
    studies: dict[str, dict] = {}
    patients: dict[tuple[str, str], set[str]] = {}
    for study_uid, series_uid, patient_id, patient_name, count, size in rows:
        study = studies.setdefault(
            study_uid,
            {
                "StudyInstanceUID": study_uid,
                "patients": [],
                "series": [],
                "instances": 0,
                "size_bytes": 0,
            },
        )
        patient = {"PatientID": patient_id, "PatientName": patient_name}
        if patient not in study["patients"]:
            study["patients"].append(patient)
        series = next((x for x in study["series"] if x["SeriesInstanceUID"] == series_uid), None)
        if series is None:
            series = {"SeriesInstanceUID": series_uid, "instances": 0, "size_bytes": 0}
            study["series"].append(series)
        series["instances"] += int(count)
        series["size_bytes"] += int(size or 0)
        study["instances"] += int(count)
        study["size_bytes"] += int(size or 0)
        patients.setdefault((patient_id, patient_name), set()).add(study_uid)
    view.studies = list(studies.values())
    view.patients = [
        {"PatientID": pid, "PatientName": name, "studies": len(uids)}
        for (pid, name), uids in sorted(patients.items())
    ]
    view.instances = sum(s["instances"] for s in view.studies)
    view.size_bytes = sum(s["size_bytes"] for s in view.studies)
    for study in view.studies:
        ids = sorted({x["PatientID"] for x in study["patients"]})
        if len(ids) > 1:
            view.problems.append(
                f"study {study['StudyInstanceUID']} holds {len(ids)} patient IDs: {', '.join(ids)}"
            )
        names = sorted({x["PatientName"] for x in study["patients"]})
        if len(ids) == 1 and len(names) > 1:
            view.problems.append(
                f"study {study['StudyInstanceUID']} holds {len(names)} patient names for one "
                "patient ID"
            )
    return view


def list_for(archive: Archive, scope: Scope) -> list[u.SessionRow]:
    with archive.database.read() as conn:
        return [s for s in u.list_sessions(conn, scope) if scope.may_upload_to(s.source_pk)]


def update_description(archive: Archive, scope: Scope, public_id: str, description: str) -> None:
    if len(description) > MAX_DESCRIPTION:
        raise SessionProblem(400, f"description is longer than {MAX_DESCRIPTION} characters")
    with archive.database.write() as conn:
        session = _check_open(scope, u.find_session(conn, scope, public_id, lock=True), public_id)
        u.set_description(conn, session.pk, description)


def discard(archive: Archive, scope: Scope, public_id: str) -> int:
    """Discard an open session; the number of instances thrown away."""
    with archive.database.write() as conn:
        session = u.find_session(conn, scope, public_id, lock=True)
        if session is None or not scope.may_upload_to(session.source_pk):
            raise SessionProblem(404, f"upload session {public_id} not found")
        if session.state != u.OPEN:
            raise SessionProblem(409, f"upload session {public_id} is {session.state}")
        removed = len(u.remove_instances(conn, session.pk))
        u.set_state(conn, session.pk, u.DISCARDED, utcnow())
    return removed


_REFUSED = {
    RecordOutcome.CONFLICT: (
        failure_reasons.DUPLICATE_CONFLICT,
        "a different object is already stored under this SOPInstanceUID",
    ),
    RecordOutcome.SERIES_IN_OTHER_STUDY: (
        failure_reasons.SERIES_IN_OTHER_STUDY,
        "its SeriesInstanceUID already belongs to another study",
    ),
    RecordOutcome.NOT_VISIBLE: (
        failure_reasons.UID_NOT_AVAILABLE,
        "this Study, Series or SOP Instance UID cannot be used by this uploader",
    ),
}


class _Refused(Exception):
    pass


@dataclass(frozen=True)
class CommitResult:
    instances: int
    studies: list[str]
    already_stored: int


def commit(archive: Archive, scope: Scope, public_id: str) -> CommitResult:
    """Record every instance of the session in the archive, in ONE transaction.

    Per series, the first new instance goes through `record_instance` (patient, study and
    series rows, the source visibility check, the study lock) and the others are added with
    a few multi-row statements (`record_more_of_series`); instances whose SOP Instance UID
    the archive already holds go through `record_instance` one by one (identical, conflict,
    overwrite policy). Only those instances' headers are read, before the write transaction.
    """
    started = time.perf_counter()
    with archive.database.read() as conn:
        session = _check_open(scope, u.find_session(conn, scope, public_id), public_id)
        rows = u.session_instances(conn, session.pk)
        stored = stored_sop_instance_uids(
            conn, scope.tenant_id, [row.sop_instance_uid for row in rows]
        )
    plan: list[tuple[Any, list[Any]]] = []  # (row recorded alone, rows added in bulk after it)
    bulk_of: dict[tuple[str, str], list] = {}  # series -> the rest list of its first new row
    for row in rows:
        key = (row.study_instance_uid, row.series_instance_uid)
        if row.sop_instance_uid in stored:
            plan.append((row, []))  # identical, conflict or overwrite: on its own
        elif key not in bulk_of:
            bulk_of[key] = []
            plan.append((row, bulk_of[key]))
        else:
            bulk_of[key].append(row)
    headers = {first.id: _header(archive, first.blob_key) for first, _ in plan}
    read = time.perf_counter()
    visible = None if scope.source_pks is None else scope.source_pks | {session.source_pk}
    refused: list[dict] = []
    released: list[str] = []
    bulk_changes: list[changes.NewChange] = []
    identical = 0
    try:
        with archive.database.write() as conn:
            locked = _check_open(
                scope, u.find_session(conn, scope, public_id, lock=True), public_id
            )
            if u.session_instance_ids(conn, locked.pk) != [r.id for r in rows]:
                raise SessionProblem(409, "instances were added while committing; commit again")
            for first, rest in plan:
                record = _record(scope, session, first, headers[first.id], visible)
                result = record_instance(conn, record)
                if result.outcome in _REFUSED:
                    reason, message = _REFUSED[result.outcome]
                    for row in [first, *rest]:
                        refused.append(
                            {
                                "SOPInstanceUID": row.sop_instance_uid,
                                "FailureReason": reason,
                                "reason": message,
                            }
                        )
                    continue
                if result.outcome is RecordOutcome.IDENTICAL:
                    identical += 1
                if result.released_blob_key:
                    released.append(result.released_blob_key)
                if not refused:
                    record_more_of_series(
                        conn,
                        scope.tenant_id,
                        session.source_pk,
                        first.series_instance_uid,
                        [_bulk_item(row) for row in rest],
                    )
                    bulk_changes.extend(_stored_changes(session.source_pk, rest, headers[first.id]))
            if refused:
                raise _Refused()
            # instance.stored of the instances added in bulk (record_instance recorded the
            # first of each series itself), at commit.
            changes.defer_changes(conn, scope.tenant_id, bulk_changes)
            _studies_committed(conn, scope, session, public_id, rows, headers)
            u.remove_instances(conn, locked.pk)
            u.set_state(conn, locked.pk, u.COMMITTED, utcnow())
    except _Refused:
        raise SessionProblem(
            409,
            f"{len(refused)} instance(s) cannot be recorded; nothing was committed",
            refused,
        ) from None
    except IntegrityError:
        # Another upload stored one of these SOP Instance UIDs during the commit.
        raise SessionProblem(
            409, "an instance was stored by another upload while committing; commit again"
        ) from None
    for blob_key in released:
        archive.blob_store.delete(blob_key)
    studies = sorted({row.study_instance_uid for row in rows})
    log.info(
        "upload session committed",
        extra={
            "session": public_id,
            "instances": len(rows),
            "studies": len(studies),
            "headers_read": len(headers),
            "read_seconds": round(read - started, 3),
            "write_seconds": round(time.perf_counter() - read, 3),
        },
    )
    return CommitResult(len(rows), studies, identical)


def _stored_changes(source_pk: int, rows: list, header: pydicom.Dataset) -> list[changes.NewChange]:
    """`instance.stored` of rows added in bulk to the series `header` (its first) is of."""
    modality = a.text(header, "Modality", 16)
    found = []
    for row in rows:
        detail: dict = {"sop_class_uid": row.sop_class_uid}
        if modality:
            detail["modality"] = modality
        found.append(
            changes.NewChange(
                source_pk,
                changes.INSTANCE_STORED,
                row.study_instance_uid,
                row.series_instance_uid,
                row.sop_instance_uid,
                detail,
            )
        )
    return found


def _studies_committed(conn, scope: Scope, session, public_id: str, rows, headers) -> None:
    """In the commit's transaction: each study of the session attaches to its open order
    (as ingest does), counts as complete (issue 13: a committed staged upload), so its
    orders become IMAGES_READY, and the change feed gets `upload_session.committed`."""
    per_study: dict[str, int] = {}
    first_header: dict[str, pydicom.Dataset] = {}
    for row in rows:
        per_study[row.study_instance_uid] = per_study.get(row.study_instance_uid, 0) + 1
        if row.id in headers:
            first_header.setdefault(row.study_instance_uid, headers[row.id])
    for study_instance_uid, count in sorted(per_study.items()):
        study_pk = conn.execute(
            select(Study.id).where(
                Study.tenant_id == scope.tenant_id,
                Study.study_instance_uid == study_instance_uid,
            )
        ).scalar_one()
        header = first_header[study_instance_uid]
        attach_on_ingest(
            conn,
            scope.tenant_id,
            session.source_pk,
            study_pk,
            study_instance_uid,
            a.text(header, "AccessionNumber", 16),
            a.text(header, "PatientID"),
            a.text(header, "IssuerOfPatientID"),
            scope.principal,
        )
        reason = f"upload session {public_id} committed"
        complete_orders_of_study(conn, scope.tenant_id, study_pk, scope.principal, reason)
        complete_study(
            conn,
            scope.tenant_id,
            study_pk,
            session.source_pk,
            UPLOAD_SESSION,
            {"upload_session": public_id},
        )
        changes.defer_change(
            conn,
            scope.tenant_id,
            session.source_pk,
            changes.UPLOAD_SESSION_COMMITTED,
            study_instance_uid,
            detail={"upload_session": public_id, "instances": count},
        )


def _bulk_item(row) -> dict[str, object]:
    return {
        "sop_instance_uid": row.sop_instance_uid,
        "sop_class_uid": row.sop_class_uid,
        "transfer_syntax_uid": row.transfer_syntax_uid,
        "blob_key": row.blob_key,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        **decode_index_values(row.index_values),
        "dicom_json": bytes(row.dicom_json),
        "frame_offsets": None if row.frame_offsets is None else bytes(row.frame_offsets),
        "pixel_data_vr": row.pixel_data_vr,
    }


_DATE_KEYS: dict[str, Any] = {
    "content_date": date,
    "content_time": dtime,
    "acquisition_datetime": datetime,
}


def encode_index_values(dataset: pydicom.Dataset) -> bytes:
    return orjson.dumps(instance_attributes(dataset))


def decode_index_values(raw: bytes) -> dict[str, object]:
    values = orjson.loads(raw)
    for key, kind in _DATE_KEYS.items():
        if values.get(key) is not None:
            values[key] = kind.fromisoformat(values[key])
    return values


def _header(archive: Archive, blob_key: str) -> pydicom.Dataset:
    with archive.blob_store.open(blob_key) as fh:
        return pydicom.dcmread(fh, stop_before_pixels=True)


def _record(scope, session, row, dataset, visible) -> InstanceRecord:
    frames = None
    if row.frame_offsets is not None:
        frames = [[(int(o), int(n)) for o, n in frame] for frame in orjson.loads(row.frame_offsets)]
    return InstanceRecord(
        tenant_id=scope.tenant_id,
        source_pk=session.source_pk,
        dataset=dataset,
        study_instance_uid=row.study_instance_uid,
        series_instance_uid=row.series_instance_uid,
        sop_instance_uid=row.sop_instance_uid,
        sop_class_uid=row.sop_class_uid,
        transfer_syntax_uid=row.transfer_syntax_uid,
        blob_key=row.blob_key,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        dicom_json=bytes(row.dicom_json),
        frames=frames,
        pixel_data_vr=row.pixel_data_vr,
        visible_source_pks=visible,
    )


def expire_sessions(archive: Archive) -> int:
    """Close and empty the open sessions past their expiry (their files become orphans the
    sweeper removes); the number of sessions expired."""
    now = utcnow()
    with archive.database.write() as conn:
        expired = u.expired_open_sessions(conn, now)
        for session_pk in expired:
            u.remove_instances(conn, session_pk)
            u.set_state(conn, session_pk, u.EXPIRED, now)
    if expired:
        log.info("upload sessions expired", extra={"sessions": len(expired)})
    return len(expired)
