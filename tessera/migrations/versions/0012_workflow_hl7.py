"""workflow glue: study completion marks (study.complete once per study), HL7 v2 senders

Revision ID: 0012_workflow_hl7
Revises: 0011_ups_workitems
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_workflow_hl7"
down_revision = "0011_ups_workitems"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "study_completion",
        sa.Column("study_pk", KEY, sa.ForeignKey("study.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("study_pk"),
    )
    op.create_index("ix_study_completion_pending", "study_completion", ["completed_at"])
    op.create_table(
        "hl7_facility",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("sending_facility", sa.String(227), nullable=False),
        sa.Column("sending_application", sa.String(227), nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sending_facility", "sending_application"),
    )


def downgrade() -> None:
    op.drop_table("hl7_facility")
    op.drop_index("ix_study_completion_pending", "study_completion")
    op.drop_table("study_completion")
