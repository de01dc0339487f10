"""Attach a document (PDF, photo, text, office file, video) to a study as a DICOM object.

The file's kind is read from its bytes (tessera.storage.documents.kinds); the object is
built with the target study's patient and study attributes, in a new series, and stored
through the same ingest as STOW-RS (tessera.services.ingest), so it is indexed, searchable
and retrievable like any instance. A study the caller cannot see is "not found".
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import Connection, select

from tessera.archive import Archive
from tessera.index.models import Study
from tessera.index.order_store import Order
from tessera.index.target_study import TargetStudy, find_target_study
from tessera.scope import Scope
from tessera.services import failure_reasons
from tessera.services.ingest import StoreOutcome, UnknownSource, ingest_file, resolve_upload_source
from tessera.services.orders import OrderConflict, OrderNotFound, open_order_for_upload
from tessera.storage.documents.common import DocumentDescription, write_part10
from tessera.storage.documents.kinds import DocumentKind, UnsupportedDocument, document_kind
from tessera.storage.documents.office import ConversionFailed, ConverterMissing, office_to_pdf
from tessera.storage.documents.pdf import TRANSFER_SYNTAX as PDF_SYNTAX
from tessera.storage.documents.pdf import encapsulated_pdf
from tessera.storage.documents.photo import UnreadableImage, photographic_image
from tessera.storage.documents.text import text_to_pdf
from tessera.storage.documents.video import UnreadableVideo, video_photographic_image

MAX_TITLE = 64
_OFFICE_SUFFIX = {
    DocumentKind.DOCX: ".docx",
    DocumentKind.DOC: ".doc",
    DocumentKind.ODT: ".odt",
    DocumentKind.RTF: ".rtf",
}


class DocumentRejected(Exception):
    """The document is not stored; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class DocumentUpload:
    path: Path  # the received file (a spool file; the caller removes it)
    filename: str | None
    declared_type: str | None
    title: str
    source: str | None = None


@dataclass(frozen=True)
class StoredDocument:
    outcome: StoreOutcome
    kind: DocumentKind
    # What the file became: "application/pdf" for converted text and office files.
    stored_as: str


def study_dataset(target: TargetStudy) -> Dataset:
    """The Patient and General Study attributes of `target`, as a dataset."""
    ds = Dataset()
    ds.StudyInstanceUID = target.study_instance_uid
    ds.PatientName = target.patient_name or ""
    ds.PatientID = target.patient_id
    if target.issuer_of_patient_id:
        ds.IssuerOfPatientID = target.issuer_of_patient_id
    ds.PatientBirthDate = (
        target.patient_birth_date.strftime("%Y%m%d") if target.patient_birth_date else ""
    )
    ds.PatientSex = target.patient_sex or ""
    ds.StudyDate = target.study_date.strftime("%Y%m%d") if target.study_date else ""
    ds.StudyTime = target.study_time.strftime("%H%M%S") if target.study_time else ""
    ds.AccessionNumber = target.accession_number or ""
    ds.StudyID = target.study_id or ""
    if target.study_description:
        ds.StudyDescription = target.study_description[:64]
    ds.ReferringPhysicianName = target.referring_physician_name or ""
    if target.timezone_offset_from_utc:
        ds.TimezoneOffsetFromUTC = target.timezone_offset_from_utc
    return ds


def _check_title(title: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise DocumentRejected(400, "a title is required (form field 'title')")
    if len(title) > MAX_TITLE:
        raise DocumentRejected(400, f"the title is longer than {MAX_TITLE} characters")
    if "\\" in title:
        raise DocumentRejected(400, "the title may not contain a backslash")
    return title


def build_document(
    target: TargetStudy, upload: DocumentUpload, title: str
) -> tuple[Dataset, str, DocumentKind, str]:
    """(the DICOM object, its transfer syntax, the file's kind, the media type stored)."""
    with open(upload.path, "rb") as fh:
        head = fh.read(4096)
    try:
        kind = document_kind(head, upload.filename, upload.declared_type)
    except UnsupportedDocument as exc:
        raise DocumentRejected(415, str(exc)) from exc
    description = DocumentDescription(title, series_number=(target.max_series_number or 0) + 1)
    study = study_dataset(target)
    try:
        if kind is DocumentKind.PDF:
            pdf = upload.path.read_bytes()
        elif kind is DocumentKind.TEXT:
            pdf = text_to_pdf(upload.path.read_bytes(), title)
        elif kind.needs_office_converter:
            pdf = office_to_pdf(upload.path, _OFFICE_SUFFIX[kind])
        elif kind in (DocumentKind.JPEG, DocumentKind.PNG):
            ds, syntax = photographic_image(study, upload.path.read_bytes(), description)
            return ds, syntax, kind, kind.value
        else:
            ds, syntax = video_photographic_image(study, upload.path.read_bytes(), description)
            return ds, syntax, kind, kind.value
    except ConverterMissing as exc:
        raise DocumentRejected(415, str(exc)) from exc
    except (ConversionFailed, UnreadableImage, UnreadableVideo) as exc:
        raise DocumentRejected(422, str(exc)) from exc
    return encapsulated_pdf(study, pdf, description), PDF_SYNTAX, kind, "application/pdf"


def store_document(
    archive: Archive,
    scope: Scope,
    study_uid: str,
    upload: DocumentUpload,
    order_id: int | None = None,
) -> StoredDocument:
    """Build and store the document in a study the caller sees; with `order_id`, the
    document is also attached to that open order, as STOW-RS `?order=` does. Raises
    DocumentRejected (with an HTTP status)."""
    title = _check_title(upload.title)
    with archive.database.read() as conn:
        if order_id is not None:
            _open_order(conn, scope, order_id)
        target = find_target_study(conn, scope, study_uid)
    if target is None:
        raise DocumentRejected(404, f"study {study_uid} not found")
    return _store(archive, scope, target, upload, title, upload.source, order_id)


def store_order_document(
    archive: Archive, scope: Scope, order_id: int, upload: DocumentUpload
) -> StoredDocument:
    """Store a document for an open order: in its study when the caller sees one (the
    order's images, or a study with the order's Study Instance UID), else in a new study
    whose patient and study attributes come from the order. The upload's source defaults
    to the order's. Raises DocumentRejected: 404 for an order the caller cannot see, 409
    for a closed one."""
    title = _check_title(upload.title)
    with archive.database.read() as conn:
        order = _open_order(conn, scope, order_id)
        target = _order_target(conn, scope, order)
    return _store(archive, scope, target, upload, title, upload.source or order.source, order_id)


def _open_order(conn: Connection, scope: Scope, order_id: int) -> Order:
    try:
        return open_order_for_upload(conn, scope, order_id)
    except OrderNotFound as exc:
        raise DocumentRejected(404, str(exc)) from exc
    except OrderConflict as exc:
        raise DocumentRejected(409, str(exc)) from exc


def _order_target(conn: Connection, scope: Scope, order: Order) -> TargetStudy:
    study_uid = order.study_instance_uid
    if order.study_pk is not None:
        study_uid = conn.execute(
            select(Study.study_instance_uid).where(Study.id == order.study_pk)
        ).scalar_one()
    target = find_target_study(conn, scope, study_uid)
    return target if target is not None else order_study(order, study_uid)


def order_study(order: Order, study_uid: str) -> TargetStudy:
    """The patient and study attributes an order gives a study that has no images yet:
    Study Date/Time of its first scheduled step, Study ID its Requested Procedure ID."""
    step = order.steps[0] if order.steps else None
    return TargetStudy(
        study_instance_uid=study_uid,
        patient_name=order.patient_name,
        patient_id=order.patient_id,
        issuer_of_patient_id=order.issuer_of_patient_id,
        patient_birth_date=order.patient_birth_date,
        patient_sex=order.patient_sex,
        study_date=step.start_date if step else None,
        study_time=step.start_time if step else None,
        accession_number=order.accession_number,
        study_id=order.requested_procedure_id,
        study_description=order.requested_procedure_description,
        referring_physician_name=order.referring_physician_name,
        timezone_offset_from_utc=None,
        max_series_number=None,
    )


def _store(
    archive: Archive,
    scope: Scope,
    target: TargetStudy,
    upload: DocumentUpload,
    title: str,
    source: str | None,
    order_id: int | None,
) -> StoredDocument:
    try:
        source_pk = resolve_upload_source(archive, scope, source)
    except UnknownSource as exc:
        raise DocumentRejected(400, str(exc)) from exc
    if upload.path.stat().st_size == 0:
        raise DocumentRejected(400, "the file is empty (0 bytes)")
    ds, syntax, kind, stored_as = build_document(target, upload, title)
    with tempfile.NamedTemporaryFile(
        dir=archive.spool_dir, prefix="document-", suffix=".dcm", delete=False
    ) as fh:
        part10 = Path(fh.name)
    try:
        write_part10(ds, part10, syntax)
        sha256 = _sha256(part10)
    except BaseException:
        part10.unlink(missing_ok=True)
        raise
    outcome = ingest_file(  # consumes the file
        archive, scope, part10, sha256, source_pk, target.study_instance_uid, None, order_id
    )
    if not outcome.stored:
        status = 500
        if outcome.failure_reason in (
            failure_reasons.UID_NOT_AVAILABLE,
            failure_reasons.ORDER_MISMATCH,
        ):
            status = 409
        elif outcome.failure_reason == failure_reasons.OUT_OF_RESOURCES:
            status = 507
        raise DocumentRejected(status, outcome.message)
    return StoredDocument(outcome, kind, stored_as)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
