"""Priors: a Patient ID search also finds the studies of the identities linked to it.

When the tenant's linked matching is on (the default) and a study-level query (QIDO-RS
`/studies?PatientID=..`, a study-level C-FIND) matches one exact Patient ID (and maybe one
exact Issuer of Patient ID), the identities it names are the seeds; the query then also
returns the studies of every identity linked to a seed. Only identities the caller may see
take part (`identities.visible_condition`), so a source-locked caller gets exactly the
linked studies of their sources and learns nothing of hidden identities. Each such study
keeps its own Patient ID and Issuer, and carries an Other Patient IDs Sequence naming the
other identities of its person that the caller may see.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from tessera.index.identities import visible_condition
from tessera.index.models import Patient, Study, Tenant
from tessera.index.query import Match, MatchKind, Query
from tessera.index.query_attributes import Level
from tessera.scope import Scope

OTHER_PATIENT_IDS_SEQUENCE = 0x00101002
ISSUER_OF_PATIENT_ID = 0x00100021
_KEYWORDS = ("PatientID", "IssuerOfPatientID")


def identity_matches(query: Query) -> list[Match]:
    """The exact PatientID (and IssuerOfPatientID) matches a linked search starts from."""
    if query.level is not Level.STUDY:
        return []
    found = [m for m in query.matches if m.attribute.keyword in _KEYWORDS]
    if not any(m.attribute.keyword == "PatientID" for m in found):
        return []
    if any(m.kind is not MatchKind.SINGLE for m in found):
        return []
    return found


def linked_patient_pks(conn: Connection, scope: Scope, query: Query) -> list[int] | None:
    """The visible identities linked to the query's Patient ID, or None when the query is
    not a linked search (or nothing is linked: the query runs exactly as without links)."""
    matches = identity_matches(query)
    if not matches:
        return None
    enabled = conn.execute(
        select(Tenant.linked_matching).where(Tenant.id == scope.tenant_id)
    ).scalar()
    if not enabled:
        return None
    seeds = select(Patient.id, Patient.person_pk).where(visible_condition(scope))
    for match in matches:
        keyword = match.attribute.keyword
        column = Patient.patient_id if keyword == "PatientID" else Patient.issuer_of_patient_id
        seeds = seeds.where(column == match.values[0])
    rows = conn.execute(seeds.limit(100)).all()
    persons = sorted({row.person_pk for row in rows if row.person_pk is not None})
    if not persons:
        return None
    members = conn.execute(
        select(Patient.id).where(visible_condition(scope), Patient.person_pk.in_(persons))
    ).scalars()
    linked = sorted(set(members) - {row.id for row in rows})
    return linked or None


def return_issuer(query: Query) -> None:
    """A linked search (or a person's history) returns each study's Issuer of Patient ID
    with the QIDO-RS defaults: the Patient IDs of several sites mean nothing without it."""
    if query.include_defaults and ISSUER_OF_PATIENT_ID not in query.return_keys:
        query.return_keys.append(ISSUER_OF_PATIENT_ID)


def add_other_patient_ids(
    conn: Connection, scope: Scope, query: Query, items: list[dict[str, Any]], pks: list[int]
) -> None:
    """Give each study of a linked search the Other Patient IDs Sequence of its person
    (the other visible identities), when the query returns it (QIDO defaults, or asked)."""
    if not items or not (query.include_defaults or OTHER_PATIENT_IDS_SEQUENCE in query.return_keys):
        return
    owners = dict(
        conn.execute(select(Study.id, Study.patient_pk).where(Study.id.in_(pks))).tuples().all()
    )
    patients = conn.execute(
        select(Patient.id, Patient.patient_id, Patient.issuer_of_patient_id, Patient.person_pk)
        .where(visible_condition(scope))
        .where(
            Patient.person_pk.in_(
                select(Patient.person_pk).where(Patient.id.in_(set(owners.values())))
            )
        )
    ).all()
    by_person: dict[int, list] = {}
    for row in patients:
        by_person.setdefault(row.person_pk, []).append(row)
    person_of = {row.id: row.person_pk for row in patients}
    for index, (item, pk) in enumerate(zip(items, pks, strict=True)):
        owner = owners.get(pk, -1)
        person = person_of.get(owner, -1)
        others = [r for r in by_person.get(person, []) if r.id != owner]
        if not others:
            continue
        item["00101002"] = {"vr": "SQ", "Value": [_other(r) for r in others]}
        items[index] = dict(sorted(item.items()))


def _other(row: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"00100020": {"vr": "LO", "Value": [row.patient_id]}}
    if row.issuer_of_patient_id:
        element["00100021"] = {"vr": "LO", "Value": [row.issuer_of_patient_id]}
    element["00100022"] = {"vr": "CS", "Value": ["TEXT"]}
    return element
