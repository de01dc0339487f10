"""Tables of the workflow glue (migration 0012_workflow_hl7):

- `study_completion`: one row per study stored since this migration, made with its first
  instance (pending) and marked when the study is complete (its order reached IMAGES_READY,
  a committed upload session held it, or it was quiet). `study.complete` goes to the change
  feed exactly once per study, in the transaction that marks the row.
- `hl7_facility`: which tenant and source an inbound HL7 v2 message belongs to, by its
  sending application and facility (MSH-3, MSH-4); configured by an administrator.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.models import Base, Key


class StudyCompletion(Base):
    __tablename__ = "study_completion"
    __table_args__ = (Index("ix_study_completion_pending", "completed_at"),)
    study_pk: Mapped[int] = mapped_column(
        ForeignKey("study.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    # The source of the study's first instance (what its change feed entries are bound to).
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # None while pending.
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What made it complete: order, upload_session, quiet.
    completed_by: Mapped[str] = mapped_column(String(32), default="")


class Hl7Facility(Base):
    """An HL7 v2 sender: messages whose MSH-4 (and MSH-3, when given here) match go to this
    tenant's source. Unique over the whole deployment: one listener serves every tenant."""

    __tablename__ = "hl7_facility"
    __table_args__ = (UniqueConstraint("sending_facility", "sending_application"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    # MSH-4 (its first component, the namespace ID) and MSH-3 ('' = any application).
    sending_facility: Mapped[str] = mapped_column(String(227))
    sending_application: Mapped[str] = mapped_column(String(227), default="")
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
