"""patient identity changes: corrections, moves and merges with history, and coercion

Revision ID: 0014_identity_changes
Revises: 0013_staged_listener
Create Date: 2026-12-01

- patient.merged_into_pk: the identity a merged-away identity went into (HL7 A40); NULL for
  a live identity.
- identity_change: every correction, study move and merge, with the touched rows before and
  after (JSON), who, when, why, and its undo.
- study_coercion: the patient attributes a changed study's instances are sent with (the
  stored bytes are kept as received).

No existing row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_identity_changes"
down_revision = "0013_staged_listener"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("merged_into_pk", KEY, nullable=True))
    op.create_table(
        "identity_change",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("patient_pk", KEY, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("other_patient_pk", KEY, sa.ForeignKey("patient.id"), nullable=True),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False, server_default=""),
        sa.Column("summary", sa.LargeBinary(), nullable=False),
        sa.Column("before", sa.LargeBinary(), nullable=False),
        sa.Column("after", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("undone_by", sa.String(128), nullable=True),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_identity_change_patient", "identity_change", ["tenant_id", "patient_pk"])
    op.create_index(
        "ix_identity_change_other", "identity_change", ["tenant_id", "other_patient_pk"]
    )
    op.create_table(
        "study_coercion",
        sa.Column("study_pk", KEY, sa.ForeignKey("study.id"), nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("attributes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("study_pk"),
    )


def downgrade() -> None:
    op.drop_table("study_coercion")
    op.drop_table("identity_change")
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("merged_into_pk")
