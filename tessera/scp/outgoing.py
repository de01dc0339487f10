"""Sending stored instances to a DIMSE peer as C-STOREs (C-MOVE / C-GET sub-operations and
routing rules): the presentation contexts to propose, what the peer accepted, each instance
as stored or transcoded to an accepted syntax with the study's coerced attributes, and a
faster association loop for streaming many instances.

Memory: an instance under the convert_in_memory_max_bytes setting (32 MiB) is read, decoded and sent as a pydicom Dataset.
A larger one is sent from a file, PDU by PDU (pynetdicom's chunked send): the stored file
itself when the receiver takes its syntax and nothing is coerced, else a copy written to
the spool folder frame by frame (storage/transcode_stream.py) and deleted once sent. The
sender holds a frame and a PDU, not the instance.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import _config, build_context
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset

from tessera.archive import Archive
from tessera.index.coercion import coerce_dataset
from tessera.index.retrieve import RetrievedInstance
from tessera.scp.transport import pace_sending
from tessera.storage import syntaxes
from tessera.storage.blobstore import FileSystemBlobStore
from tessera.storage.transcode import TranscodeError, transcode_instance
from tessera.storage.transcode_stream import write_instance

log = logging.getLogger(__name__)

# A C-STORE of a file path sends the file's encoded data set in PDU-sized reads (the
# presentation context must match its transfer syntax exactly: instance_file sees to it).
_config.STORE_SEND_CHUNKED_DATASET = True

# An association carries at most 128 presentation contexts (PS3.8 9.3.2.2: odd IDs 1-255).
MAX_CONTEXTS = 128
NATIVE = (syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, syntaxes.IMPLICIT_VR_LITTLE_ENDIAN)
VERIFICATION = "1.2.840.10008.1.1"


def tighten(assoc: Association) -> None:
    """pynetdicom's DUL thread sleeps 1 ms whenever its queue is empty, and a data set leaves
    as one PDU per loop, so at a 16 KB PDU the sleeps can add up to tens of ms per instance.
    Associations that stream sub-operations poll faster (not measured apart: in the
    benchmark the destination storescp was the bound)."""
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = 0.0001


def accepted_pairs(assoc: Association, as_scu: bool) -> set[tuple[str, str]]:
    pairs = set()
    for context in assoc.accepted_contexts:
        if as_scu and assoc.is_acceptor and not context.as_scu:
            # C-GET: we send C-STOREs on the requestor's association, so our role must be SCU.
            continue
        pairs.add((str(context.abstract_syntax), str(context.transfer_syntax[0])))
    return pairs


def proposed_contexts(instances: list[RetrievedInstance]) -> list:
    """The stored syntax of each SOP class, and native syntaxes as a fallback."""
    pairs: list[tuple[str, list[str]]] = []
    seen: set[tuple[str, str]] = set()
    fallback: set[str] = set()
    for instance in instances:
        key = (instance.sop_class_uid, instance.transfer_syntax_uid)
        if key not in seen:
            seen.add(key)
            pairs.append((instance.sop_class_uid, [instance.transfer_syntax_uid]))
        # Every SOP class also gets a native context: a receiver that refuses the stored
        # syntax (compressed, big endian, or the other native one) still gets the instance.
        if instance.sop_class_uid not in fallback:
            fallback.add(instance.sop_class_uid)
            pairs.append((instance.sop_class_uid, list(NATIVE)))
    return [build_context(abstract, offered) for abstract, offered in pairs[:MAX_CONTEXTS]]


class InstanceFile(Dataset):
    """A sub-operation's instance held in a Part 10 file: in memory only its SOP Class and
    Instance UIDs (pynetdicom's failed-instance list reads them). Sent by an association
    that `send_files_from_disk` prepared; `release` deletes a temporary copy."""

    def __init__(self, path: Path, sop_class_uid: str, sop_instance_uid: str, temporary: bool):
        super().__init__()
        self.SOPClassUID = sop_class_uid
        self.SOPInstanceUID = sop_instance_uid
        self.file_path = path
        self.temporary = temporary

    def release(self) -> None:
        if self.temporary:
            self.file_path.unlink(missing_ok=True)


def send_files_from_disk(assoc: Association) -> None:
    """Make `assoc.send_c_store` send an InstanceFile from its file (pynetdicom's C-MOVE and
    C-GET service classes call it with what the handler yields, which must be a Dataset),
    paced so the file's PDUs wait on disk, not in the send queue."""
    pace_sending(assoc)
    original: Callable[..., Any] = assoc.send_c_store
    if getattr(original, "sends_files", False):
        return

    def send_c_store(dataset: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(dataset, InstanceFile):
            return original(dataset.file_path, *args, **kwargs)
        return original(dataset, *args, **kwargs)

    send_c_store.sends_files = True  # type: ignore[attr-defined]
    assoc.send_c_store = send_c_store  # type: ignore[method-assign]


def release(dataset: Dataset | None) -> None:
    """Delete the temporary file behind a sent InstanceFile (nothing for a Dataset)."""
    if isinstance(dataset, InstanceFile):
        dataset.release()


def sendable(
    archive: Archive, instance: RetrievedInstance, accepted: set[tuple[str, str]]
) -> Dataset:
    """What a C-STORE sends for `instance`: a decoded Dataset (dataset_for) for a small
    instance, an InstanceFile for one of the convert_in_memory_max_bytes setting (32 MiB) or more."""
    if instance.size_bytes < archive.settings.convert_in_memory_max_bytes:
        return dataset_for(archive, instance, accepted)
    return instance_file(archive, instance, accepted)


def instance_file(
    archive: Archive, instance: RetrievedInstance, accepted: set[tuple[str, str]]
) -> InstanceFile:
    """The instance as a file in the first syntax of send_syntaxes that works: the stored
    file when it can go as it is, else a converted / coerced copy in the spool folder."""
    stored = instance.transfer_syntax_uid
    receivable = [ts for sop_class, ts in accepted if sop_class == instance.sop_class_uid]
    targets = syntaxes.send_syntaxes(stored, receivable)
    for target in targets:
        if target == stored and not instance.coercion:
            return _as_stored(archive, instance)
        try:
            return _converted(archive, instance, target)
        except TranscodeError as exc:
            log.info(
                "transcoding for a C-STORE sub-operation failed",
                extra={
                    "sop_instance_uid": instance.sop_instance_uid,
                    "target": target,
                    "reason": str(exc),
                },
            )
    # As for dataset_for: sent as stored, pynetdicom finds no context, counted failed.
    return _as_stored(archive, instance)


def _as_stored(archive: Archive, instance: RetrievedInstance) -> InstanceFile:
    store = archive.blob_store
    if isinstance(store, FileSystemBlobStore):
        path = store.path_for(instance.blob_key)
        if _sendable_meta(path, instance.transfer_syntax_uid):
            return InstanceFile(path, instance.sop_class_uid, instance.sop_instance_uid, False)
    return _converted(archive, instance, instance.transfer_syntax_uid)


def _sendable_meta(path: Path, transfer_syntax_uid: str) -> bool:
    """Does the file's meta information name what a chunked send needs (SOP Class and
    Instance, the recorded transfer syntax)? Else a copy with a complete header is sent."""
    try:
        meta, _ = split_dataset(path)
    except Exception:
        return False
    return (
        all(
            keyword in meta for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")
        )
        and str(meta.get("TransferSyntaxUID", "")) == transfer_syntax_uid
    )


def _converted(archive: Archive, instance: RetrievedInstance, target: str) -> InstanceFile:
    coercion = instance.coercion
    fd, name = tempfile.mkstemp(prefix="send-", suffix=".tmp", dir=archive.spool_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "w+b", buffering=1024 * 1024) as out:
            with archive.blob_store.open(instance.blob_key) as source:
                write_instance(
                    source,
                    target,
                    out,
                    (lambda ds: coerce_dataset(ds, coercion)) if coercion else None,
                )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return InstanceFile(path, instance.sop_class_uid, instance.sop_instance_uid, True)


def dataset_for(
    archive: Archive, instance: RetrievedInstance, accepted: set[tuple[str, str]]
) -> Dataset:
    """The stored instance, as stored when the receiver accepts its syntax, else transcoded,
    with the study's coerced attributes (identity changes, tessera.index.coercion)."""
    return coerce_dataset(stored_dataset(archive, instance, accepted), instance.coercion)


def stored_dataset(
    archive: Archive, instance: RetrievedInstance, accepted: set[tuple[str, str]]
) -> Dataset:
    with archive.blob_store.open(instance.blob_key) as fh:
        data = fh.read()
    stored = instance.transfer_syntax_uid
    receivable = [ts for sop_class, ts in accepted if sop_class == instance.sop_class_uid]
    for target in syntaxes.send_syntaxes(stored, receivable):
        if target == stored:
            return pydicom.dcmread(BytesIO(data))
        try:
            return pydicom.dcmread(BytesIO(transcode_instance(data, target)))
        except TranscodeError as exc:
            log.info(
                "transcoding for a C-STORE sub-operation failed",
                extra={
                    "sop_instance_uid": instance.sop_instance_uid,
                    "target": target,
                    "reason": str(exc),
                },
            )
    # No syntax the receiver takes: send as stored; pynetdicom finds no context and the
    # sub-operation is counted as failed (its UID goes in the Failed SOP Instance UID List).
    return pydicom.dcmread(BytesIO(data))
