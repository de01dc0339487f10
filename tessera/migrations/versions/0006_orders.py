"""orders, scheduled procedure steps, status history, MPPS

Revision ID: 0006_orders
Revises: 0005_source_attributes
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_orders"
down_revision = "0010_identity"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _created() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def _updated() -> sa.Column:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "procedure_order",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("issuer_of_accession_number", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(324), nullable=False),
        sa.Column("patient_name_norm", sa.String(324), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(64), nullable=False),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_sex", sa.String(16), nullable=False),
        sa.Column("requested_procedure_id", sa.String(16), nullable=False),
        sa.Column("requested_procedure_description", sa.String(64), nullable=False),
        sa.Column("requested_procedure_code_value", sa.String(64), nullable=False),
        sa.Column("requested_procedure_coding_scheme", sa.String(64), nullable=False),
        sa.Column("requested_procedure_code_meaning", sa.String(64), nullable=False),
        sa.Column("referring_physician_name", sa.String(324), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("reason_for_requested_procedure", sa.String(1024), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("study_pk", KEY, sa.ForeignKey("study.id"), nullable=True),
        _created(),
        _updated(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "tenant_id", "source_pk", "issuer_of_accession_number", "accession_number"
        ),
        sa.UniqueConstraint("tenant_id", "study_instance_uid"),
    )
    op.create_index("ix_order_accession", "procedure_order", ["tenant_id", "accession_number"])
    op.create_index("ix_order_patient_id", "procedure_order", ["tenant_id", "patient_id"])
    op.create_index(
        "ix_order_patient_name_norm", "procedure_order", ["tenant_id", "patient_name_norm"]
    )
    op.create_index("ix_order_status", "procedure_order", ["tenant_id", "status"])
    op.create_index("ix_order_study", "procedure_order", ["study_pk"])
    op.create_index("ix_order_created", "procedure_order", ["tenant_id", "created_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_order_patient_name_pattern",
            "procedure_order",
            ["tenant_id", "patient_name_norm"],
            postgresql_ops={"patient_name_norm": "varchar_pattern_ops"},
        )

    op.create_table(
        "scheduled_procedure_step",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column(
            "order_pk", KEY, sa.ForeignKey("procedure_order.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("scheduled_procedure_step_id", sa.String(16), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("start_time", sa.Time(), nullable=True),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("scheduled_station_ae_title", sa.String(16), nullable=False),
        sa.Column("scheduled_station_name", sa.String(16), nullable=False),
        sa.Column("scheduled_performing_physician_name", sa.String(324), nullable=False),
        sa.Column("scheduled_performing_physician_name_norm", sa.String(324), nullable=True),
        sa.Column("description", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sps_order", "scheduled_procedure_step", ["order_pk"])
    op.create_index(
        "ix_sps_start", "scheduled_procedure_step", ["tenant_id", "start_date", "start_time"]
    )
    op.create_index(
        "ix_sps_station", "scheduled_procedure_step", ["tenant_id", "scheduled_station_ae_title"]
    )

    op.create_table(
        "order_status_change",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column(
            "order_pk", KEY, sa.ForeignKey("procedure_order.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("principal", sa.String(160), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_order_status_change_order", "order_status_change", ["order_pk", "id"])

    op.create_table(
        "performed_procedure_step",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("order_pk", KEY, sa.ForeignKey("procedure_order.id"), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("performed_station_ae_title", sa.String(16), nullable=False),
        sa.Column("dicom_json", sa.Text(), nullable=False),
        _created(),
        _updated(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "sop_instance_uid"),
    )
    op.create_index("ix_mpps_order", "performed_procedure_step", ["order_pk"])

    op.create_table(
        "performed_instance",
        sa.Column(
            "mpps_pk",
            KEY,
            sa.ForeignKey("performed_procedure_step.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("mpps_pk", "sop_instance_uid"),
    )


def downgrade() -> None:
    op.drop_table("performed_instance")
    op.drop_index("ix_mpps_order", "performed_procedure_step")
    op.drop_table("performed_procedure_step")
    op.drop_index("ix_order_status_change_order", "order_status_change")
    op.drop_table("order_status_change")
    for name in ("ix_sps_station", "ix_sps_start", "ix_sps_order"):
        op.drop_index(name, "scheduled_procedure_step")
    op.drop_table("scheduled_procedure_step")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_order_patient_name_pattern", "procedure_order")
    for name in (
        "ix_order_created",
        "ix_order_study",
        "ix_order_status",
        "ix_order_patient_name_norm",
        "ix_order_patient_id",
        "ix_order_accession",
    ):
        op.drop_index(name, "procedure_order")
    op.drop_table("procedure_order")
