"""The DIMSE side of the audit trail: associations refused, stores, queries and retrievals,
through the archive's batched `AuditLog` (`Archive.audit`), as DICOMweb requests.

The principal is `ae:CALLING_AE`; like DICOMweb, stores and retrievals are recorded once per
study, caller and window (a 500-slice C-STORE makes one entry), queries once each.
"""

from __future__ import annotations

from collections.abc import Iterable

from pynetdicom.association import Association

from tessera.archive import Archive
from tessera.auth.audit import Event
from tessera.auth.peers import DimseCaller


def principal(calling_ae_title: str) -> str:
    return f"ae:{calling_ae_title.strip()}"


def remote_address(assoc: Association) -> str:
    address = getattr(assoc.requestor, "address", "") or ""
    return str(address)


def _event(
    assoc: Association,
    caller: DimseCaller,
    action: str,
    outcome: str,
    target: str,
    detail: dict | None,
) -> Event:
    return Event(
        caller.tenant_id,
        principal(caller.calling_ae_title),
        action,
        outcome,
        target=target,
        detail=detail or {},
        remote_addr=remote_address(assoc),
    )


def record(
    archive: Archive,
    assoc: Association,
    caller: DimseCaller,
    action: str,
    outcome: str,
    target: str = "",
    detail: dict | None = None,
) -> None:
    archive.audit.add(_event(assoc, caller, action, outcome, target, detail))


def record_per_study(
    archive: Archive,
    assoc: Association,
    caller: DimseCaller,
    action: str,
    outcome: str,
    study_uids: Iterable[str],
    detail: dict | None = None,
) -> None:
    log = archive.audit
    for study_uid in sorted(set(study_uids)):
        log.add_retrieval(_event(assoc, caller, action, outcome, study_uid, detail))


def record_refused_association(
    archive: Archive, assoc: Association, calling: str, called: str, reason: str
) -> None:
    archive.audit.add(
        Event(
            None,
            principal(calling),
            "associate",
            "denied",
            target=called,
            detail={"reason": reason},
            remote_addr=remote_address(assoc),
        )
    )
