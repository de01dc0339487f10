"""Sending stored instances to a DIMSE peer as C-STOREs (C-MOVE / C-GET sub-operations and
routing rules): the presentation contexts to propose, what the peer accepted, each instance
as stored or transcoded to an accepted syntax with the study's coerced attributes, and a
faster association loop for streaming many instances."""

from __future__ import annotations

import logging
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.association import Association

from tessera.archive import Archive
from tessera.index.coercion import coerce_dataset
from tessera.index.retrieve import RetrievedInstance
from tessera.storage import syntaxes
from tessera.storage.transcode import TranscodeError, transcode_instance

log = logging.getLogger(__name__)

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
