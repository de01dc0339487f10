"""C-STORE SCP: the received data set, bytes as sent, goes through the same ingest as STOW-RS.

pynetdicom calls the handler only once the whole data set has arrived; an association that
drops earlier never reaches ingest, so a half-received C-STORE leaves nothing behind.
pynetdicom writes the data set to a temporary file as its PDUs arrive (scp/server.py turns
STORE_RECV_CHUNKED_DATASET on); the handler copies it to the spool folder piece by piece, so
a 1 GB instance does not sit in memory.

A peer registered as `staged` (a reviewed listener) does not store into the archive: its
data sets go into an upload session per association and study
(tessera/services/listener_sessions.py), invisible until a user commits it.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import cast

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.scp import audit, statuses
from tessera.scp.association import caller_of
from tessera.scp.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tessera.services.ingest import StoreOutcome, ingest_file
from tessera.services.listener_sessions import ListenerSessions
from tessera.storage.spool import SpoolFile

log = logging.getLogger(__name__)
COPY_CHUNK = 1024 * 1024
_SESSIONS_ATTRIBUTE = "tessera_listener_sessions"


def part10_header(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, calling_ae_title: str
) -> bytes:
    """Preamble, 'DICM' and File Meta Information for a data set received over DIMSE."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if calling_ae_title:
        meta.SourceApplicationEntityTitle = calling_ae_title
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + buffer.getvalue()


def handle_store(event: evt.Event, archive: Archive) -> Dataset:
    caller = caller_of(event.assoc)
    request = cast(C_STORE, event.request)
    sop_class_uid = str(request.AffectedSOPClassUID or "")
    sop_instance_uid = str(request.AffectedSOPInstanceUID or "")
    if not caller.scope.can(permissions.UPLOAD):
        audit.record(archive, event.assoc, caller, "upload", "denied", sop_instance_uid)
        return statuses.status_dataset(statuses.NOT_AUTHORIZED, "this AE may not store")
    transfer_syntax_uid = str(event.context.transfer_syntax)
    spool = SpoolFile(archive.spool_dir)
    try:
        spool.write(
            part10_header(
                sop_class_uid, sop_instance_uid, transfer_syntax_uid, caller.calling_ae_title
            )
        )
        # The data set exactly as the peer encoded it (never decoded and re-encoded).
        _copy_received(event, spool)
        spool.close()
    except OSError as exc:
        spool.discard()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return statuses.status_dataset(statuses.OUT_OF_RESOURCES, "storage is full")
        log.exception("spool write failed")
        return statuses.status_dataset(statuses.PROCESSING_FAILURE, "cannot write spool file")
    expected_sop = (sop_class_uid, sop_instance_uid)
    if caller.peer is not None and caller.peer.staged:
        outcome = _listener_sessions(event, archive).store(spool.path, spool.sha256, expected_sop)
    else:
        outcome = ingest_file(
            archive,
            caller.scope,
            spool.path,
            spool.sha256,
            caller.upload_source_pk,
            expected_sop=expected_sop,
        )
    result = _audit_result(outcome, caller.peer is not None and caller.peer.staged)
    if outcome.study_instance_uid:
        audit.record_per_study(
            archive, event.assoc, caller, "upload", result, [outcome.study_instance_uid]
        )
    else:
        audit.record(archive, event.assoc, caller, "upload", result, sop_instance_uid)
    if not outcome.stored:
        log.info(
            "C-STORE refused",
            extra={
                "calling_ae_title": caller.calling_ae_title,
                "sop_instance_uid": sop_instance_uid,
                "failure_reason": outcome.failure_reason,
                "reason": outcome.message,
            },
        )
    return statuses.store_status(outcome)


def _copy_received(event: evt.Event, spool: SpoolFile) -> None:
    """Append the received data set to the spool file. pynetdicom wrote it to a temporary
    file as it arrived (STORE_RECV_CHUNKED_DATASET, set in scp/server.py), after File Meta
    Information of its own, which is skipped: the copy goes in 1 MiB pieces, so memory does
    not grow with the data set."""
    path = _received_path(event)
    if path is None:
        spool.write(event.encoded_dataset(include_meta=False))
        return
    _, offset = split_dataset(path)
    with open(path, "rb") as received:
        received.seek(offset)
        while chunk := received.read(COPY_CHUNK):
            spool.write(chunk)


def _received_path(event: evt.Event) -> Path | None:
    try:
        path = event.dataset_path
    except AttributeError:
        return None  # received in memory (STORE_RECV_CHUNKED_DATASET off)
    return Path(path) if path else None


def _listener_sessions(event: evt.Event, archive: Archive) -> ListenerSessions:
    """The association's upload sessions (a staged peer's), made at its first C-STORE."""
    found = getattr(event.assoc, _SESSIONS_ATTRIBUTE, None)
    if found is None:
        caller = caller_of(event.assoc)
        found = ListenerSessions(
            archive, caller.scope, caller.upload_source_pk, caller.calling_ae_title
        )
        setattr(event.assoc, _SESSIONS_ATTRIBUTE, found)
    return found


def _audit_result(outcome: StoreOutcome, staged: bool) -> str:
    if not outcome.stored:
        return "failed"
    return "staged" if staged else "ok"
