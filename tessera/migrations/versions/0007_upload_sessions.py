"""upload sessions: instances stored durably, committed to the archive later

Revision ID: 0007_upload_sessions
Revises: 0005_source_attributes
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_upload_sessions"
down_revision = "0005_source_attributes"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "upload_session",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(160), nullable=False),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_upload_session_owner", "upload_session", ["tenant_id", "owner", "state"])
    op.create_index("ix_upload_session_expires_at", "upload_session", ["expires_at"])
    op.create_table(
        "upload_session_instance",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column(
            "session_pk",
            KEY,
            sa.ForeignKey("upload_session.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(324), nullable=False),
        sa.Column("blob_key", sa.String(160), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("dicom_json", sa.LargeBinary(), nullable=False),
        sa.Column("frame_offsets", sa.LargeBinary(), nullable=True),
        sa.Column("pixel_data_vr", sa.String(2), nullable=True),
        sa.Column("index_values", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_pk", "sop_instance_uid"),
    )
    op.create_index("ix_upload_session_instance_blob_key", "upload_session_instance", ["blob_key"])


def downgrade() -> None:
    op.drop_table("upload_session_instance")
    op.drop_table("upload_session")
