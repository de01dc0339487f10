"""Order tables: orders (imaging service requests with their requested procedure), their
scheduled procedure steps (what the Modality Worklist serves) and the status history.

Registered on the index's Base; migration 0006_orders creates them. Every row carries its
tenant, and an order its source (the site it belongs to): the Scope filters both in SQL.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from sqlalchemy import (
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.clock import utcnow as utc_now
from tessera.index.models import Base, Key

# The order life cycle (docs/orders.md).
SCHEDULED = "SCHEDULED"
IN_PROGRESS = "IN_PROGRESS"
IMAGES_READY = "IMAGES_READY"
REPORTED = "REPORTED"
FINAL = "FINAL"
CANCELLED = "CANCELLED"
DISCONTINUED = "DISCONTINUED"
STATUSES = (SCHEDULED, IN_PROGRESS, IMAGES_READY, REPORTED, FINAL, CANCELLED, DISCONTINUED)
# Orders a modality may still perform: served on the worklist, images attach to them.
OPEN_STATUSES = (SCHEDULED, IN_PROGRESS)


def new_workitem_uid() -> str:
    """A UPS Workitem (SOP Instance) UID for a new step: the 2.25 UUID form (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid4().int}"


class ProcedureOrder(Base):
    # "order" is reserved in SQL.
    __tablename__ = "procedure_order"
    __table_args__ = (
        # Accession numbers are issued per site: unique within (tenant, source, issuer).
        UniqueConstraint(
            "tenant_id", "source_pk", "issuer_of_accession_number", "accession_number"
        ),
        UniqueConstraint("tenant_id", "study_instance_uid"),
        Index("ix_order_accession", "tenant_id", "accession_number"),
        Index("ix_order_patient_id", "tenant_id", "patient_id"),
        Index("ix_order_patient_name_norm", "tenant_id", "patient_name_norm"),
        Index("ix_order_status", "tenant_id", "status"),
        Index("ix_order_study", "study_pk"),
        Index("ix_order_created", "tenant_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"))
    status: Mapped[str] = mapped_column(String(16))
    accession_number: Mapped[str] = mapped_column(String(16))
    # '' rather than NULL, so the unique constraint holds without an issuer.
    issuer_of_accession_number: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    patient_name_norm: Mapped[str | None] = mapped_column(String(324))
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_sex: Mapped[str] = mapped_column(String(16), default="")
    requested_procedure_id: Mapped[str] = mapped_column(String(16), default="")
    requested_procedure_description: Mapped[str] = mapped_column(String(64), default="")
    # Requested Procedure Code Sequence, one item.
    requested_procedure_code_value: Mapped[str] = mapped_column(String(64), default="")
    requested_procedure_coding_scheme: Mapped[str] = mapped_column(String(64), default="")
    requested_procedure_code_meaning: Mapped[str] = mapped_column(String(64), default="")
    referring_physician_name: Mapped[str] = mapped_column(String(324), default="")
    # Requested Procedure Priority (STAT, HIGH, ROUTINE, MEDIUM, LOW).
    priority: Mapped[str] = mapped_column(String(16), default="ROUTINE")
    reason_for_requested_procedure: Mapped[str] = mapped_column(String(1024), default="")
    # Generated at creation, so the modality (from the worklist) and the archive agree.
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    comments: Mapped[str] = mapped_column(Text, default="")
    # The study the images arrived in (set when the first instance attaches).
    study_pk: Mapped[int | None] = mapped_column(ForeignKey("study.id"))
    # Set here, not by the database: SQLite's CURRENT_TIMESTAMP keeps whole seconds, and a
    # suspended UPS subscription compares this with its own moment (ups_subscriptions).
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# PostgreSQL: a patient name prefix (LIKE 'DOE%') uses an index whatever the collation.
Index(
    "ix_order_patient_name_pattern",
    ProcedureOrder.__table__.c.tenant_id,
    ProcedureOrder.__table__.c.patient_name_norm,
    postgresql_ops={"patient_name_norm": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")


class ScheduledProcedureStep(Base):
    """One item of the order's Scheduled Procedure Step Sequence: one worklist entry."""

    __tablename__ = "scheduled_procedure_step"
    __table_args__ = (
        Index("ix_sps_order", "order_pk"),
        Index("ix_sps_start", "tenant_id", "start_date", "start_time"),
        # A modality's own steps of a day (migration 0016).
        Index(
            "ix_sps_station_start",
            "tenant_id",
            "scheduled_station_ae_title",
            "start_date",
            "start_time",
        ),
        Index("ux_sps_workitem_uid", "tenant_id", "workitem_uid", unique=True),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("procedure_order.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    scheduled_procedure_step_id: Mapped[str] = mapped_column(String(16))
    start_date: Mapped[date | None] = mapped_column(Date)
    start_time: Mapped[time | None] = mapped_column(Time)
    modality: Mapped[str] = mapped_column(String(16), default="")
    scheduled_station_ae_title: Mapped[str] = mapped_column(String(16), default="")
    scheduled_station_name: Mapped[str] = mapped_column(String(16), default="")
    scheduled_performing_physician_name: Mapped[str] = mapped_column(String(324), default="")
    scheduled_performing_physician_name_norm: Mapped[str | None] = mapped_column(String(324))
    description: Mapped[str] = mapped_column(String(64), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    # UPS-RS (migration 0011): the step as a Workitem, and the Transaction UID of the
    # performer that claimed its order over UPS-RS (None until then).
    workitem_uid: Mapped[str | None] = mapped_column(String(64), default=new_workitem_uid)
    transaction_uid: Mapped[str | None] = mapped_column(String(64))
    # Migration 0017: what the performer last reported (Procedure Step Progress (0074,1004),
    # a DS percentage, and its Description (0074,1006)) with Update Workitem while IN PROGRESS.
    progress: Mapped[str | None] = mapped_column(String(16))
    progress_description: Mapped[str | None] = mapped_column(String(1024))


class OrderStatusChange(Base):
    """The status history: every transition (and every refused attach) with who and why."""

    __tablename__ = "order_status_change"
    __table_args__ = (Index("ix_order_status_change_order", "order_pk", "id"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("procedure_order.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    principal: Mapped[str] = mapped_column(String(160), default="")
    reason: Mapped[str] = mapped_column(String(512), default="")


class PerformedProcedureStep(Base):
    """A Modality Performed Procedure Step (N-CREATE / N-SET) and the order it performs."""

    __tablename__ = "performed_procedure_step"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sop_instance_uid"),
        Index("ix_mpps_order", "order_pk"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    # IN PROGRESS, COMPLETED, DISCONTINUED (Performed Procedure Step Status).
    status: Mapped[str] = mapped_column(String(16))
    order_pk: Mapped[int | None] = mapped_column(ForeignKey("procedure_order.id"))
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    performed_station_ae_title: Mapped[str] = mapped_column(String(16), default="")
    # The attributes as last received (DICOM JSON), for audit and display.
    dicom_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PerformedInstance(Base):
    """An instance an MPPS says was made (Performed Series Sequence > Referenced Image /
    Non-Image Composite SOP Instance Sequence); 'complete' needs all of them stored."""

    __tablename__ = "performed_instance"
    mpps_pk: Mapped[int] = mapped_column(
        ForeignKey("performed_procedure_step.id", ondelete="CASCADE"), primary_key=True
    )
    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    sop_class_uid: Mapped[str] = mapped_column(String(64), default="")
