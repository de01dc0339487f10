"""Identity tables (migration 0010): other identities an instance names, confirmed links
between identities and the links' history. See docs/identity.md.

A patient row is one identity: (Patient ID, Issuer of Patient ID) within a tenant. A person
(master patient) is a group of identities joined by links; `Patient.person_pk` names it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, LargeBinary, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.models import Base, Key


class OtherPatientId(Base):
    """An identity named in an instance's Other Patient IDs Sequence: a link candidate,
    recorded per source so a source-locked caller only sees what their sources sent."""

    __tablename__ = "other_patient_id"
    __table_args__ = (
        UniqueConstraint("patient_pk", "source_pk", "patient_id", "issuer_of_patient_id"),
        Index("ix_other_patient_id_key", "tenant_id", "patient_id", "issuer_of_patient_id"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"))
    patient_id: Mapped[str] = mapped_column(String(64))
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64))


class PatientLink(Base):
    """A confirmed link: two identities of one tenant are one person (stored low pk first)."""

    __tablename__ = "patient_link"
    __table_args__ = (
        UniqueConstraint("patient_pk_low", "patient_pk_high"),
        Index("ix_patient_link_high", "patient_pk_high"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    patient_pk_low: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    patient_pk_high: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    created_by: Mapped[str] = mapped_column(String(128), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PatientLinkEvent(Base):
    """History of links: every link and unlink, who did it, when and why."""

    __tablename__ = "patient_link_event"
    __table_args__ = (Index("ix_patient_link_event_pair", "patient_pk_low", "patient_pk_high"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    action: Mapped[str] = mapped_column(String(16))
    patient_pk_low: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    patient_pk_high: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    principal: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(256), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdentityChange(Base):
    """A correction, move or merge (IHE IOCM-like): who, when, why, and the touched rows
    before and after (JSON), so an undo restores exactly the previous state (0014)."""

    __tablename__ = "identity_change"
    __table_args__ = (
        Index("ix_identity_change_patient", "tenant_id", "patient_pk"),
        Index("ix_identity_change_other", "tenant_id", "other_patient_pk"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    # correct | move | merge
    action: Mapped[str] = mapped_column(String(16))
    # The identity changed (correct), the study's former patient (move), the merged-away
    # identity (merge); other_patient_pk: the receiving identity (move, merge).
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    other_patient_pk: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))
    principal: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(256), server_default="")
    # What the change did, as shown in history (small JSON object).
    summary: Mapped[bytes] = mapped_column(LargeBinary)
    before: Mapped[bytes] = mapped_column(LargeBinary)
    after: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    undone_by: Mapped[str | None] = mapped_column(String(128))
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StudyCoercion(Base):
    """The patient attributes every instance of a study is shown with after a correction,
    move or merge (keyword -> DICOM string value): metadata, WADO-RS, WADO-URI, C-MOVE and
    C-GET apply them to what they send; the stored bytes are never changed (0014)."""

    __tablename__ = "study_coercion"
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    attributes: Mapped[bytes] = mapped_column(LargeBinary)
