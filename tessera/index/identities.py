"""Patient identities as a caller may see them: lookup, demographics, linked groups.

An identity (patient row) is visible to a source-locked caller when one of their sources sent
studies under it: a `study_source` row of a visible source, on a study of the patient, with the
patient's own (Patient ID, Issuer). Its demographics then come from the earliest such row, so
nothing shown comes from a hidden source. A caller who sees every source sees every identity
of the tenant with the patient row's values. Everything is filtered inside SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, Connection, and_, exists, select

from tessera.index.models import Patient, Study, StudySource
from tessera.scope import Scope


@dataclass(frozen=True)
class Identity:
    pk: int
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str | None
    patient_name_norm: str | None
    patient_birth_date: date | None
    patient_sex: str | None
    person_pk: int | None
    # The identity this one was merged into (tessera.index.identity_changes), else None.
    merged_into_pk: int | None = None

    def as_json(self, show_person: bool) -> dict[str, object]:
        body: dict[str, object] = {
            "id": self.pk,
            "patient_id": self.patient_id,
            "issuer_of_patient_id": self.issuer_of_patient_id,
            "patient_name": self.patient_name,
            "patient_birth_date": (
                None if self.patient_birth_date is None else self.patient_birth_date.isoformat()
            ),
            "patient_sex": self.patient_sex,
        }
        if show_person:
            body["person"] = self.person_pk or self.pk
            if self.merged_into_pk is not None:
                body["merged_into"] = self.merged_into_pk
        return body


def visible_condition(scope: Scope) -> ColumnElement[bool]:
    """SQL: the patient row is an identity the caller may see (tenant and source lock)."""
    condition = Patient.tenant_id == scope.tenant_id
    if scope.source_pks is None:
        return condition
    return and_(condition, exists(_own_source_values(scope).with_only_columns(StudySource.id)))


def _own_source_values(scope: Scope):
    """The caller's sources' study_source rows under the patient's own key (correlated)."""
    assert scope.source_pks is not None
    return (
        select(StudySource)
        .join(Study, Study.id == StudySource.study_pk)
        .where(
            Study.patient_pk == Patient.id,
            StudySource.source_pk.in_(sorted(scope.source_pks)),
            StudySource.patient_id == Patient.patient_id,
            StudySource.issuer_of_patient_id == Patient.issuer_of_patient_id,
        )
    )


def identities(
    conn: Connection,
    scope: Scope,
    *,
    pks: list[int] | None = None,
    patient_id: str | None = None,
    issuer_of_patient_id: str | None = None,
) -> list[Identity]:
    """Visible identities, by primary keys and/or by Patient ID (and Issuer)."""
    query = select(Patient).where(visible_condition(scope)).order_by(Patient.id)
    if pks is not None:
        query = query.where(Patient.id.in_(pks))
    if patient_id is not None:
        query = query.where(Patient.patient_id == patient_id)
    if issuer_of_patient_id is not None:
        query = query.where(Patient.issuer_of_patient_id == issuer_of_patient_id)
    rows = conn.execute(query.limit(1000)).all()
    if scope.source_pks is None:
        return [_identity(row, row) for row in rows]
    return [_identity(row, _own_demographics(conn, scope, row.id)) for row in rows]


def identity(conn: Connection, scope: Scope, pk: int) -> Identity | None:
    found = identities(conn, scope, pks=[pk])
    return found[0] if found else None


def linked_group(conn: Connection, scope: Scope, found: Identity) -> list[Identity]:
    """The visible identities of the person `found` belongs to (itself included)."""
    if found.person_pk is None:
        return [found]
    query = select(Patient.id).where(
        Patient.tenant_id == scope.tenant_id, Patient.person_pk == found.person_pk
    )
    return identities(conn, scope, pks=[pk for (pk,) in conn.execute(query)])


def _own_demographics(conn: Connection, scope: Scope, patient_pk: int):
    query = (
        _own_source_values(scope)
        .with_only_columns(
            StudySource.patient_name,
            StudySource.patient_name_norm,
            StudySource.patient_birth_date,
            StudySource.patient_sex,
        )
        .where(Patient.id == patient_pk)
        .order_by(StudySource.id)
        .limit(1)
    )
    return conn.execute(query).first()


def _identity(row, values) -> Identity:
    return Identity(
        pk=row.id,
        patient_id=row.patient_id,
        issuer_of_patient_id=row.issuer_of_patient_id,
        patient_name=values.patient_name,
        patient_name_norm=values.patient_name_norm,
        patient_birth_date=values.patient_birth_date,
        patient_sex=values.patient_sex,
        person_pk=row.person_pk,
        merged_into_pk=row.merged_into_pk,
    )
