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

from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.association import Association

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.auth.peers import DimseCaller
from tessera.index.peers import peer_by_ae_title
from tessera.index.retrieve import RetrievedInstance, resolve_uid_lists
from tessera.scp import audit, statuses
from tessera.scp.association import caller_of
from tessera.scp.identifier import IdentifierError, decode_identifier, retrieve_keys
from tessera.scp.outgoing import (
    VERIFICATION,
    accepted_pairs,
    proposed_contexts,
    release,
    send_files_from_disk,
    sendable,
    tighten,
)
from tessera.scp.transport import disable_nagle

log = logging.getLogger(__name__)


@dataclass
class _Receiver:
    """The Storage SCP side of the sub-operations and what it accepted."""

    association: Association | None = None
    accepted: set[tuple[str, str]] = field(default_factory=set)

    def capture(self, event: evt.Event) -> None:
        self.association = event.assoc
        self.accepted = accepted_pairs(event.assoc, as_scu=True)
        send_files_from_disk(event.assoc)
        tighten(event.assoc)
        disable_nagle(event.assoc)


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
            dataset = sendable(archive, instance, accepted)
        except Exception:
            log.exception("stored instance unreadable", extra={"blob_key": instance.blob_key})
            failed = Dataset()
            failed.SOPInstanceUID = instance.sop_instance_uid
            yield statuses.PENDING, failed  # no context for an empty data set: counted failed
            continue
        try:
            yield statuses.PENDING, dataset
        finally:
            release(dataset)  # pynetdicom has sent it (or the retrieval ended)


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
        yield destination.host, destination.port, {"contexts": [build_context(VERIFICATION)]}
        yield 1
        yield statuses.status_dataset(statuses.IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    receiver = _Receiver()
    yield (
        destination.host,
        destination.port,
        {
            "contexts": proposed_contexts(instances) or [build_context(VERIFICATION)],
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
    receiver = _Receiver(event.assoc, accepted_pairs(event.assoc, as_scu=True))
    send_files_from_disk(event.assoc)
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
