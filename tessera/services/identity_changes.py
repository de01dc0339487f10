"""Identity changes as services: corrections, moves, merges, their undo, and links.

Each function runs one write transaction of `archive`: the change itself
(tessera.index.identity_changes / tessera.index.links), an audit event, and the change
feed entries (at commit, `changes.defer_changes`). The REST API
(tessera.dicomweb.identity_api) calls them; so can an HL7 v2 ADT handler:

    scope = full_scope(tenant_id, principal="hl7:SENDING_APP")
    merge_patients(archive, scope, survivor_pk, merged_pk, reason="A40 ...")  # A40
    correct_patient(archive, scope, pk, {"patient_id": "NEW"})               # A47
    correct_patient(archive, scope, pk, {"patient_name": "DOE^JANE"})        # A08
    link_patients(archive, scope, a_pk, b_pk) / unlink_patients(...)         # A24 / A37

`scope` is who acts (tenant, principal, source lock); `remote_addr` goes to the audit event.
Errors are tessera.index.errors types: NotFound (404), Conflict (409), InvalidValue (400).
`find_identity` turns an HL7 PID-3 (Patient ID, issuer) into the identity's key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from tessera.archive import Archive
from tessera.auth.audit import Event, record_now
from tessera.index import changes, links
from tessera.index import identity_changes as core
from tessera.index.errors import NotFound
from tessera.index.identities import identities, identity
from tessera.index.identity_changes import ChangeResult
from tessera.index.models import StudySource
from tessera.scope import Scope


def correct_patient(
    archive: Archive,
    scope: Scope,
    patient_pk: int,
    values: dict[str, Any],
    reason: str = "",
    remote_addr: str = "",
) -> ChangeResult:
    """New demographics and/or key (Patient ID, Issuer) of an identity (HL7 A08 / A47)."""
    return _run(
        archive,
        scope,
        lambda conn: core.correct_patient(conn, scope, patient_pk, values, reason),
        reason,
        remote_addr,
    )


def move_study(
    archive: Archive,
    scope: Scope,
    study_instance_uid: str,
    target_pk: int,
    reason: str = "",
    remote_addr: str = "",
) -> ChangeResult:
    """Move a study to another identity of the tenant."""
    return _run(
        archive,
        scope,
        lambda conn: core.move_study(conn, scope, study_instance_uid, target_pk, reason),
        reason,
        remote_addr,
    )


def merge_patients(
    archive: Archive,
    scope: Scope,
    survivor_pk: int,
    merged_pk: int,
    reason: str = "",
    remote_addr: str = "",
) -> ChangeResult:
    """HL7 A40: the studies of `merged_pk` go to `survivor_pk`."""
    return _run(
        archive,
        scope,
        lambda conn: core.merge_patients(conn, scope, survivor_pk, merged_pk, reason),
        reason,
        remote_addr,
    )


def undo_change(
    archive: Archive, scope: Scope, change_id: int, reason: str = "", remote_addr: str = ""
) -> ChangeResult:
    """Undo a correction, move or merge (the rows it touched are as before it)."""
    return _run(
        archive,
        scope,
        lambda conn: core.undo_change(conn, scope, change_id, reason),
        reason,
        remote_addr,
    )


def link_patients(
    archive: Archive, scope: Scope, a_pk: int, b_pk: int, reason: str = "", remote_addr: str = ""
) -> None:
    """HL7 A24: two identities are one person (scope checks as the REST API's)."""
    with archive.database.write() as conn:
        _visible(conn, scope, a_pk, b_pk)
        links.link(conn, scope.tenant_id, a_pk, b_pk, scope.principal, reason)
        record_now(conn, [_event(scope, "identity.link", f"{a_pk}-{b_pk}", reason, remote_addr)])


def unlink_patients(
    archive: Archive, scope: Scope, a_pk: int, b_pk: int, reason: str = "", remote_addr: str = ""
) -> None:
    """HL7 A37: undo a link."""
    with archive.database.write() as conn:
        _visible(conn, scope, a_pk, b_pk)
        links.unlink(conn, scope.tenant_id, a_pk, b_pk, scope.principal, reason)
        record_now(conn, [_event(scope, "identity.unlink", f"{a_pk}-{b_pk}", reason, remote_addr)])


def find_identity(
    archive: Archive, scope: Scope, patient_id: str, issuer_of_patient_id: str
) -> int | None:
    """The key of the identity (Patient ID, Issuer) of the tenant, or None; for a
    source-locked scope only an identity its sources sent (else None, as if unknown)."""
    with archive.database.read() as conn:
        found = identities(
            conn, scope, patient_id=patient_id, issuer_of_patient_id=issuer_of_patient_id
        )
    return found[0].pk if found else None


def _run(
    archive: Archive,
    scope: Scope,
    work: Callable[[Connection], ChangeResult],
    reason: str,
    remote_addr: str,
) -> ChangeResult:
    with archive.database.write() as conn:
        result: ChangeResult = work(conn)
        action = f"identity.{'undo' if result.undone else result.action}"
        detail = {
            "change": result.change_id,
            "identity": result.patient_pk,
            "other_identity": result.other_patient_pk,
            "studies": len(result.studies),
        }
        record_now(
            conn,
            [_event(scope, action, f"change {result.change_id}", reason, remote_addr, detail)],
        )
        record_feed(conn, scope.tenant_id, result)
        return result


def record_feed(conn: Connection, tenant_id: int, result: ChangeResult) -> None:
    """The change feed entries of a change, written at COMMIT (`changes.defer_changes`):
    `study.updated` for each touched study and each source that sent it (so a
    source-locked reader sees its own studies' changes), then `patient.updated` /
    `patient.merged` bound to no source (shown only to callers who see every source)."""
    detail: dict[str, Any] = {"identity_change": result.change_id, "action": result.action}
    if result.undone:
        detail["undone"] = True
    study_pks = [pk for pk, _ in result.studies]
    sources: dict[int, list[int]] = {}
    if study_pks:
        for study_pk, source_pk in conn.execute(
            select(StudySource.study_pk, StudySource.source_pk)
            .where(StudySource.study_pk.in_(study_pks))
            .order_by(StudySource.study_pk, StudySource.source_pk)
        ):
            sources.setdefault(study_pk, []).append(source_pk)
    entries = [
        changes.NewChange(source_pk, changes.STUDY_UPDATED, uid, detail=detail)
        for study_pk, uid in result.studies
        for source_pk in sources.get(study_pk, [])
    ]
    kind = (
        changes.PATIENT_MERGED
        if result.action == core.MERGE and not result.undone
        else changes.PATIENT_UPDATED
    )
    patient_detail = {
        **detail,
        "identity": result.patient_pk,
        "other_identity": result.other_patient_pk,
    }
    entries.append(changes.NewChange(None, kind, detail=patient_detail))
    changes.defer_changes(conn, tenant_id, entries)


def _visible(conn: Connection, scope: Scope, *pks: int) -> None:
    for pk in pks:
        if identity(conn, scope, pk) is None:
            raise NotFound(f"no identity {pk}")


def _event(
    scope: Scope,
    action: str,
    target: str,
    reason: str,
    remote_addr: str,
    detail: dict | None = None,
) -> Event:
    return Event(
        scope.tenant_id,
        scope.principal,
        action,
        "ok",
        target=target,
        detail={**(detail or {}), "reason": reason},
        remote_addr=remote_addr,
    )
