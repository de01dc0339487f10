"""C-MOVE and C-GET SCP: resolve the identifier through the scoped retrieve service, then
send each stored instance as a C-STORE sub-operation.

The instance goes out as stored when the receiver accepted its transfer syntax; otherwise it
is transcoded (storage/transcode.py) to a syntax the receiver accepted, in the order
storage/syntaxes.send_syntaxes gives (the same vocabulary WADO negotiates with). A C-MOVE destination
is looked up in the tenant's peer registry, never taken from the request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.association import Association

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.auth.peers import DimseCaller
from tessera.index.coercion import coerce_dataset
from tessera.index.peers import peer_by_ae_title
from tessera.index.retrieve import RetrievedInstance, resolve_uid_lists
from tessera.scp import audit, statuses
from tessera.scp.association import caller_of
from tessera.scp.identifier import IdentifierError, decode_identifier, retrieve_keys
from tessera.scp.transport import disable_nagle
from tessera.storage import syntaxes
from tessera.storage.transcode import TranscodeError, transcode_instance

log = logging.getLogger(__name__)

# An association carries at most 128 presentation contexts (PS3.8 9.3.2.2: odd IDs 1-255).
MAX_CONTEXTS = 128
_NATIVE = (syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, syntaxes.IMPLICIT_VR_LITTLE_ENDIAN)
_VERIFICATION = "1.2.840.10008.1.1"


@dataclass
class _Receiver:
    """The Storage SCP side of the sub-operations and what it accepted."""

    association: Association | None = None
    accepted: set[tuple[str, str]] = field(default_factory=set)

    def capture(self, event: evt.Event) -> None:
        self.association = event.assoc
        self.accepted = _accepted_pairs(event.assoc, as_scu=True)
        _tighten(event.assoc)
        disable_nagle(event.assoc)


def _tighten(assoc: Association) -> None:
    """pynetdicom's DUL thread sleeps 1 ms whenever its queue is empty, and a data set leaves
    as one PDU per loop, so at a 16 KB PDU the sleeps can add up to tens of ms per instance.
    Associations that stream sub-operations poll faster (not measured apart: in the
    benchmark the destination storescp was the bound)."""
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = 0.0001


def _accepted_pairs(assoc: Association, as_scu: bool) -> set[tuple[str, str]]:
    pairs = set()
    for context in assoc.accepted_contexts:
        if as_scu and assoc.is_acceptor and not context.as_scu:
            # C-GET: we send C-STOREs on the requestor's association, so our role must be SCU.
            continue
        pairs.add((str(context.abstract_syntax), str(context.transfer_syntax[0])))
    return pairs


def _resolve(
    archive: Archive, caller: DimseCaller, identifier: Dataset, model: str
) -> list[RetrievedInstance]:
    keys = retrieve_keys(identifier, model)
    with archive.database.read() as conn:
        if keys.study_uids is None:
            # Patient level: the patient's studies, found through the same scoped query engine.
            from tessera.scp.find import studies_of_patient

            study_uids = studies_of_patient(conn, caller.scope, keys.patient_id or "")
            if not study_uids:
                return []
            return resolve_uid_lists(conn, caller.scope, study_uids=study_uids)
        return resolve_uid_lists(
            conn,
            caller.scope,
            study_uids=keys.study_uids,
            series_uids=keys.series_uids,
            sop_instance_uids=keys.sop_instance_uids,
        )


def _proposed_contexts(instances: list[RetrievedInstance]) -> list:
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
            pairs.append((instance.sop_class_uid, list(_NATIVE)))
    return [build_context(abstract, offered) for abstract, offered in pairs[:MAX_CONTEXTS]]


def _dataset_for(
    archive: Archive, instance: RetrievedInstance, accepted: set[tuple[str, str]]
) -> Dataset:
    """The stored instance, as stored when the receiver accepts its syntax, else transcoded,
    with the study's coerced attributes (identity changes, tessera.index.coercion)."""
    return coerce_dataset(_stored_dataset(archive, instance, accepted), instance.coercion)


def _stored_dataset(
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


def _sub_operations(
    event: evt.Event,
    archive: Archive,
    instances: list[RetrievedInstance],
    receiver: _Receiver,
) -> Iterator[tuple[int, Dataset | None]]:
    for instance in instances:
        if event.is_cancelled:
            yield statuses.CANCEL, None
            return
        accepted = receiver.accepted
        try:
            dataset = _dataset_for(archive, instance, accepted)
        except Exception:
            log.exception("stored instance unreadable", extra={"blob_key": instance.blob_key})
            failed = Dataset()
            failed.SOPInstanceUID = instance.sop_instance_uid
            yield statuses.PENDING, failed  # no context for an empty data set: counted failed
            continue
        yield statuses.PENDING, dataset


def _refusal(caller: DimseCaller) -> int | None:
    if not caller.scope.can(permissions.READ):
        return statuses.NOT_AUTHORIZED
    return None


def handle_move(event: evt.Event, archive: Archive) -> Iterator:
    caller = caller_of(event.assoc)
    destination_title = str(event.move_destination or "").strip()
    with archive.database.read() as conn:
        destination = peer_by_ae_title(conn, caller.tenant_id, destination_title)
    if (
        destination is None
        or not destination.may_be_move_destination
        or destination.port <= 0
        or _refusal(caller) is not None
    ):
        audit.record(
            archive, event.assoc, caller, "retrieve", "denied", f"C-MOVE to {destination_title}"
        )
        log.info(
            "C-MOVE refused",
            extra={"calling_ae_title": caller.calling_ae_title, "destination": destination_title},
        )
        # Unknown (or not allowed) destination: pynetdicom answers 0xA801.
        yield None, None
        return
    try:
        identifier = decode_identifier(event)
        instances = _resolve(archive, caller, identifier, str(event.request.AffectedSOPClassUID))
    except IdentifierError as exc:
        # pynetdicom reports a failure only after associating with the destination.
        yield destination.host, destination.port, {"contexts": [build_context(_VERIFICATION)]}
        yield 1
        yield statuses.status_dataset(statuses.IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    receiver = _Receiver()
    yield (
        destination.host,
        destination.port,
        {
            "contexts": _proposed_contexts(instances) or [build_context(_VERIFICATION)],
            "evt_handlers": [(evt.EVT_ESTABLISHED, receiver.capture)],
        },
    )
    _audit_retrieval(archive, event, caller, instances, f"C-MOVE to {destination_title}")
    yield len(instances)
    log.info(
        "C-MOVE",
        extra={
            "calling_ae_title": caller.calling_ae_title,
            "destination": destination_title,
            "instances": len(instances),
        },
    )
    yield from _sub_operations(event, archive, instances, receiver)


def handle_get(event: evt.Event, archive: Archive) -> Iterator:
    caller = caller_of(event.assoc)
    refusal = _refusal(caller)
    if refusal is not None:
        audit.record(archive, event.assoc, caller, "retrieve", "denied", "C-GET")
        yield 1
        yield statuses.status_dataset(refusal, "this AE may not retrieve"), None
        return
    try:
        identifier = decode_identifier(event)
        instances = _resolve(archive, caller, identifier, str(event.request.AffectedSOPClassUID))
    except IdentifierError as exc:
        yield 1
        yield statuses.status_dataset(statuses.IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    receiver = _Receiver(event.assoc, _accepted_pairs(event.assoc, as_scu=True))
    _audit_retrieval(archive, event, caller, instances, "C-GET")
    yield len(instances)
    yield from _sub_operations(event, archive, instances, receiver)


def _audit_retrieval(
    archive: Archive,
    event: evt.Event,
    caller: DimseCaller,
    instances: list[RetrievedInstance],
    operation: str,
) -> None:
    """One audit entry per study retrieved (as for WADO-RS)."""
    audit.record_per_study(
        archive,
        event.assoc,
        caller,
        "retrieve",
        "ok",
        (instance.study_instance_uid for instance in instances),
        {"operation": operation},
    )
