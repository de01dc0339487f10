"""Link candidates: identities that may be the same person, with a score, for an
administrator to confirm. Tessera never links identities by itself.

Two sources of candidates, both among the identities the caller may see (and with the
demographics the caller may see, see `identities`):
- demographics: the same normalized Patient Name, and Patient Birth Date and Patient Sex that
  do not disagree (a candidate whose birth date or sex differs from the identity's, both
  known, is never proposed from demographics);
- Other Patient IDs: one identity named the other in its Other Patient IDs Sequence (from a
  source the caller sees). Disagreeing birth date or sex is then listed under `conflicts`.

Score: name 0.4 + birth date 0.3 + sex 0.1 + Other Patient IDs 0.5, at most 1.0.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, or_, select, true

from tessera.index.identities import Identity, identities, linked_group
from tessera.index.identity_models import OtherPatientId
from tessera.index.models import Patient, Study, StudySource
from tessera.scope import Scope

_LIMIT = 50


def candidates(conn: Connection, scope: Scope, found: Identity) -> list[dict[str, object]]:
    group = {member.pk for member in linked_group(conn, scope, found)}
    by_name = _same_name(conn, scope, found)
    by_other_id = _named_in_other_ids(conn, scope, found)
    proposals = []
    for other in identities(conn, scope, pks=sorted((by_name | by_other_id) - group)):
        conflicts = _conflicts(found, other)
        named = other.pk in by_other_id
        same_name = other.patient_name_norm is not None and (
            other.patient_name_norm == found.patient_name_norm
        )
        if not named and (conflicts or not same_name):
            continue
        score = 0.0
        reasons = []
        if same_name:
            score += 0.4
            reasons.append("patient_name")
        if _agree(found.patient_birth_date, other.patient_birth_date):
            score += 0.3
            reasons.append("patient_birth_date")
        if _agree(found.patient_sex, other.patient_sex):
            score += 0.1
            reasons.append("patient_sex")
        if named:
            score += 0.5
            reasons.append("other_patient_ids")
        proposals.append(
            {
                "identity": other.as_json(show_person=scope.source_pks is None),
                "score": round(min(score, 1.0), 2),
                "reasons": reasons,
                "conflicts": conflicts,
            }
        )
    proposals.sort(key=lambda p: (-_number(p["score"]), _number(p["identity"]["id"])))  # type: ignore[index]
    return proposals[:_LIMIT]


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _agree(mine: object, theirs: object) -> bool:
    return mine is not None and mine == theirs


def _conflicts(found: Identity, other: Identity) -> list[str]:
    conflicts = []
    for name in ("patient_birth_date", "patient_sex"):
        mine, theirs = getattr(found, name), getattr(other, name)
        if mine is not None and theirs is not None and mine != theirs:
            conflicts.append(name)
    return conflicts


def _same_name(conn: Connection, scope: Scope, found: Identity) -> set[int]:
    """Identities whose (visible) normalized name equals the identity's. For a locked caller
    the per-source values are matched in `identities`; here the patient row narrows."""
    if not found.patient_name_norm:
        return set()

    if scope.source_pks is None:
        query = select(Patient.id).where(
            Patient.tenant_id == scope.tenant_id,
            Patient.patient_name_norm == found.patient_name_norm,
        )
    else:
        query = (
            select(Study.patient_pk)
            .join(StudySource, StudySource.study_pk == Study.id)
            .where(
                StudySource.tenant_id == scope.tenant_id,
                StudySource.source_pk.in_(sorted(scope.source_pks)),
                StudySource.patient_name_norm == found.patient_name_norm,
            )
        )
    return {pk for (pk,) in conn.execute(query.limit(_LIMIT * 4))} - {found.pk}


def _named_in_other_ids(conn: Connection, scope: Scope, found: Identity) -> set[int]:
    """Identities named by the identity's Other Patient IDs, or naming it in theirs."""
    sources = [] if scope.source_pks is None else sorted(scope.source_pks)
    visible_source = OtherPatientId.source_pk.in_(sources) if sources else true()
    named = select(Patient.id).join(
        OtherPatientId,
        and_(
            OtherPatientId.tenant_id == Patient.tenant_id,
            or_(
                and_(
                    OtherPatientId.patient_pk == found.pk,
                    OtherPatientId.patient_id == Patient.patient_id,
                    OtherPatientId.issuer_of_patient_id == Patient.issuer_of_patient_id,
                ),
                and_(
                    OtherPatientId.patient_pk == Patient.id,
                    OtherPatientId.patient_id == found.patient_id,
                    OtherPatientId.issuer_of_patient_id == found.issuer_of_patient_id,
                ),
            ),
        ),
    )
    query = named.where(Patient.tenant_id == scope.tenant_id, visible_source)
    return {pk for (pk,) in conn.execute(query.limit(_LIMIT * 4))} - {found.pk}
