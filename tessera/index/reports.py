"""Report tables and their SQL: reports of a study, every version of each, report templates.

A report belongs to one study of one tenant. Every read and write first finds the study
through the caller's Scope inside SQL (tenant, and for a source-locked caller a visible
instance of the study), so a report of a hidden study is exactly as absent as one that does
not exist. `report.version` is the optimistic-concurrency counter: a change names the version
it was based on and is applied with `UPDATE ... WHERE version = :expected`, so of two
concurrent edits of one draft the second changes no row and is refused (no lost update).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    exists,
    func,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from tessera.index.clock import utcnow
from tessera.index.models import Base, Instance, Key, Study, Tenant
from tessera.scope import Scope

DRAFT = "DRAFT"
PRELIMINARY = "PRELIMINARY"
FINAL = "FINAL"
AMENDED = "AMENDED"
STATUSES = (DRAFT, PRELIMINARY, FINAL, AMENDED)
EDITABLE = (DRAFT, PRELIMINARY)


class ReportTemplate(Base):
    """A tenant's own template (the shipped ones live in the package)."""

    __tablename__ = "report_template"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    name: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Report(Base):
    __tablename__ = "report"
    __table_args__ = (Index("ix_report_study", "tenant_id", "study_pk"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"))
    status: Mapped[str] = mapped_column(String(16))
    # The number of the newest version; the optimistic-concurrency counter.
    version: Mapped[int] = mapped_column(Integer)
    template_name: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signed_by: Mapped[str | None] = mapped_column(String(160))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReportVersion(Base):
    __tablename__ = "report_version"
    __table_args__ = (UniqueConstraint("report_id", "version"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("report.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    # JSON: {"sections": {name: text}, "values": {field: value}, "addenda": [...]}.
    content: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Signed versions: who signed, and the DICOM objects stored for them.
    signed_by: Mapped[str | None] = mapped_column(String(160))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sr_sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    pdf_sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sr_sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    stored: Mapped[bool] = mapped_column(Boolean, default=False)


@dataclass(frozen=True)
class VisibleStudy:
    pk: int
    study_instance_uid: str
    # The source the report instances are labelled with (see `report_source_pk`).
    source_pk: int


@dataclass(frozen=True)
class VersionRow:
    version: int
    status: str
    content: dict
    author: str
    created_at: datetime
    signed_by: str | None
    signed_at: datetime | None
    sr_sop_instance_uid: str | None
    pdf_sop_instance_uid: str | None
    series_instance_uid: str | None
    sr_sop_class_uid: str | None
    stored: bool


@dataclass(frozen=True)
class ReportRow:
    id: int
    study_instance_uid: str
    status: str
    version: int
    template_name: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    signed_by: str | None
    signed_at: datetime | None


def _visible_instance(study_pk: Any, scope: Scope) -> ColumnElement[bool]:
    condition = Instance.study_pk == study_pk
    if scope.source_pks is not None:
        condition = condition & Instance.source_pk.in_(sorted(scope.source_pks))
    return condition


def visible_study(conn: Connection, scope: Scope, study_instance_uid: str) -> VisibleStudy | None:
    """The study as the caller's Scope sees it, None when absent or hidden.

    Its `source_pk` is the source of the study's first stored instance among those the caller
    sees: report instances join the study under a source every reader of the report sees.
    """
    first_instance = (
        select(Instance.source_pk)
        .where(_visible_instance(Study.id, scope))
        .order_by(Instance.id)
        .limit(1)
        .correlate(Study)
        .scalar_subquery()
    )
    row = conn.execute(
        select(Study.id, Study.study_instance_uid, first_instance.label("source_pk")).where(
            Study.tenant_id == scope.tenant_id,
            Study.study_instance_uid == study_instance_uid,
            exists().where(_visible_instance(Study.id, scope)),
        )
    ).first()
    return None if row is None else VisibleStudy(row.id, row.study_instance_uid, row.source_pk)


def insert_report(
    conn: Connection,
    tenant_id: int,
    study_pk: int,
    status: str,
    template_name: str | None,
    content: dict,
    author: str,
) -> int:
    at = utcnow()
    inserted = conn.execute(
        Report.__table__.insert().values(
            tenant_id=tenant_id,
            study_pk=study_pk,
            status=status,
            version=1,
            template_name=template_name,
            created_by=author,
            created_at=at,
            updated_at=at,
        )
    ).inserted_primary_key
    assert inserted is not None
    report_id = int(inserted[0])
    insert_version(conn, report_id, 1, status, content, author, at)
    return report_id


def insert_version(
    conn: Connection,
    report_id: int,
    version: int,
    status: str,
    content: dict,
    author: str,
    at: datetime,
    **signed: object,
) -> None:
    conn.execute(
        ReportVersion.__table__.insert().values(
            report_id=report_id,
            version=version,
            status=status,
            content=orjson.dumps(content).decode(),
            author=author,
            created_at=at,
            **signed,
        )
    )


def advance(
    conn: Connection,
    report_id: int,
    expected_version: int,
    from_statuses: tuple[str, ...],
    status: str,
    at: datetime,
    **values: object,
) -> bool:
    """Move the report to `expected_version + 1` with `status`, only if nobody changed it
    since `expected_version` and its status is one of `from_statuses`. False: it changed."""
    result = conn.execute(
        Report.__table__.update()
        .where(
            Report.id == report_id,
            Report.version == expected_version,
            Report.status.in_(from_statuses),
        )
        .values(version=expected_version + 1, status=status, updated_at=at, **values)
    )
    return result.rowcount == 1


def _report_query(scope: Scope) -> Select:
    return (
        select(
            Report.id,
            Study.study_instance_uid,
            Report.status,
            Report.version,
            Report.template_name,
            Report.created_by,
            Report.created_at,
            Report.updated_at,
            Report.signed_by,
            Report.signed_at,
        )
        .join(Study, Study.id == Report.study_pk)
        .where(
            Report.tenant_id == scope.tenant_id,
            Study.tenant_id == scope.tenant_id,
            exists().where(_visible_instance(Study.id, scope)),
        )
    )


def reports_of_study(conn: Connection, scope: Scope, study_instance_uid: str) -> list[ReportRow]:
    query = _report_query(scope).where(Study.study_instance_uid == study_instance_uid)
    return [ReportRow(*row) for row in conn.execute(query.order_by(Report.id))]


def report_in_study(
    conn: Connection, scope: Scope, study_instance_uid: str, report_id: int
) -> ReportRow | None:
    row = conn.execute(
        _report_query(scope).where(
            Study.study_instance_uid == study_instance_uid, Report.id == report_id
        )
    ).first()
    return None if row is None else ReportRow(*row)


def list_reports(
    conn: Connection, scope: Scope, status: str | None = None, limit: int = 100
) -> list[ReportRow]:
    query = _report_query(scope)
    if status is not None:
        query = query.where(Report.status == status)
    return [ReportRow(*row) for row in conn.execute(query.order_by(Report.id.desc()).limit(limit))]


def versions_of(conn: Connection, report_id: int) -> list[VersionRow]:
    """Every version of a report the caller has already found through its Scope."""
    rows = conn.execute(
        select(
            ReportVersion.version,
            ReportVersion.status,
            ReportVersion.content,
            ReportVersion.author,
            ReportVersion.created_at,
            ReportVersion.signed_by,
            ReportVersion.signed_at,
            ReportVersion.sr_sop_instance_uid,
            ReportVersion.pdf_sop_instance_uid,
            ReportVersion.series_instance_uid,
            ReportVersion.sr_sop_class_uid,
            ReportVersion.stored,
        )
        .where(ReportVersion.report_id == report_id)
        .order_by(ReportVersion.version)
    )
    return [
        VersionRow(
            version=row.version,
            status=row.status,
            content=orjson.loads(row.content),
            author=row.author,
            created_at=row.created_at,
            signed_by=row.signed_by,
            signed_at=row.signed_at,
            sr_sop_instance_uid=row.sr_sop_instance_uid,
            pdf_sop_instance_uid=row.pdf_sop_instance_uid,
            series_instance_uid=row.series_instance_uid,
            sr_sop_class_uid=row.sr_sop_class_uid,
            stored=row.stored,
        )
        for row in rows
    ]


def mark_stored(conn: Connection, report_id: int, version: int) -> None:
    conn.execute(
        ReportVersion.__table__.update()
        .where(ReportVersion.report_id == report_id, ReportVersion.version == version)
        .values(stored=True)
    )


def undo_version(conn: Connection, report_id: int, version: int, previous: ReportRow) -> None:
    """Take back a signed version whose DICOM objects could not be stored."""
    conn.execute(
        ReportVersion.__table__.delete().where(
            ReportVersion.report_id == report_id, ReportVersion.version == version
        )
    )
    conn.execute(
        Report.__table__.update()
        .where(Report.id == report_id, Report.version == version)
        .values(
            version=previous.version,
            status=previous.status,
            updated_at=previous.updated_at,
            signed_by=previous.signed_by,
            signed_at=previous.signed_at,
        )
    )


def tenant_template(conn: Connection, tenant_id: int, name: str) -> dict | None:
    document = conn.execute(
        select(ReportTemplate.document).where(
            ReportTemplate.tenant_id == tenant_id, ReportTemplate.name == name
        )
    ).scalar_one_or_none()
    return None if document is None else orjson.loads(document)


def tenant_templates(conn: Connection, tenant_id: int) -> list[dict]:
    return [
        orjson.loads(document)
        for document in conn.execute(
            select(ReportTemplate.document)
            .where(ReportTemplate.tenant_id == tenant_id)
            .order_by(ReportTemplate.name)
        ).scalars()
    ]


def put_template(conn: Connection, tenant_id: int, name: str, document: dict) -> bool:
    """Add or replace a tenant template; True when it was added."""
    encoded = orjson.dumps(document).decode()
    updated = conn.execute(
        ReportTemplate.__table__.update()
        .where(ReportTemplate.tenant_id == tenant_id, ReportTemplate.name == name)
        .values(document=encoded, updated_at=utcnow())
    ).rowcount
    if updated:
        return False
    conn.execute(
        ReportTemplate.__table__.insert().values(
            tenant_id=tenant_id, name=name, document=encoded, updated_at=utcnow()
        )
    )
    return True


def study_attributes(conn: Connection, study_pk: int) -> dict[str, str]:
    """The Patient and General Study attributes of a study (DICOM keywords -> values as
    DICOM strings, '' when the study has none), for the objects a signed report makes."""
    study = conn.execute(
        select(
            Study.study_instance_uid,
            Study.patient_name,
            Study.patient_id,
            Study.issuer_of_patient_id,
            Study.patient_birth_date,
            Study.patient_sex,
            Study.study_date,
            Study.study_time,
            Study.accession_number,
            Study.study_id,
            Study.study_description,
            Study.referring_physician_name,
        ).where(Study.id == study_pk)
    ).one()
    return {
        "StudyInstanceUID": study.study_instance_uid,
        "PatientName": study.patient_name or "",
        "PatientID": study.patient_id or "",
        "IssuerOfPatientID": study.issuer_of_patient_id or "",
        "PatientBirthDate": _da(study.patient_birth_date),
        "PatientSex": study.patient_sex or "",
        "StudyDate": _da(study.study_date),
        "StudyTime": study.study_time.strftime("%H%M%S") if study.study_time else "",
        "AccessionNumber": study.accession_number or "",
        "StudyID": study.study_id or "",
        "StudyDescription": study.study_description or "",
        "ReferringPhysicianName": study.referring_physician_name or "",
    }


def _da(value: object) -> str:
    return value.strftime("%Y%m%d") if value is not None else ""  # type: ignore[attr-defined]


def organization_of(conn: Connection, tenant_id: int) -> str:
    """The tenant's name: the Verifying Organization of the reports its physicians sign."""
    return conn.execute(select(Tenant.name).where(Tenant.id == tenant_id)).scalar_one()
