"""A study that something is being attached to (a document), looked up in the caller's
Scope: a study the caller cannot see is None, exactly like one that does not exist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time

from sqlalchemy import Connection, exists, func, select

from tessera.index.models import Instance, Series, Study
from tessera.scope import Scope


@dataclass(frozen=True)
class TargetStudy:
    study_instance_uid: str
    patient_name: str | None
    patient_id: str
    issuer_of_patient_id: str
    patient_birth_date: date | None
    patient_sex: str | None
    study_date: date | None
    study_time: time | None
    accession_number: str | None
    study_id: str | None
    study_description: str | None
    referring_physician_name: str | None
    timezone_offset_from_utc: str | None
    # The highest Series Number among the series the caller sees (None: none numbered).
    max_series_number: int | None


def _visible_instances(scope: Scope):
    condition = Instance.tenant_id == scope.tenant_id
    if scope.source_pks is not None:
        condition = condition & Instance.source_pk.in_(sorted(scope.source_pks))
    return condition


def find_target_study(conn: Connection, scope: Scope, study_uid: str) -> TargetStudy | None:
    if scope.source_pks is not None and not scope.source_pks:
        return None
    visible = _visible_instances(scope)
    study = conn.execute(
        select(Study.__table__).where(
            Study.tenant_id == scope.tenant_id,
            Study.study_instance_uid == study_uid,
            exists().where(Instance.study_pk == Study.id, visible),
        )
    ).first()
    if study is None:
        return None
    max_series = conn.execute(
        select(func.max(Series.series_number)).where(
            Series.study_pk == study.id,
            exists().where(Instance.series_pk == Series.id, visible),
        )
    ).scalar_one()
    return TargetStudy(
        study_instance_uid=study.study_instance_uid,
        patient_name=study.patient_name,
        patient_id=study.patient_id,
        issuer_of_patient_id=study.issuer_of_patient_id,
        patient_birth_date=study.patient_birth_date,
        patient_sex=study.patient_sex,
        study_date=study.study_date,
        study_time=study.study_time,
        accession_number=study.accession_number,
        study_id=study.study_id,
        study_description=study.study_description,
        referring_physician_name=study.referring_physician_name,
        timezone_offset_from_utc=study.timezone_offset_from_utc,
        max_series_number=max_series,
    )
