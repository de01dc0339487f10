"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "tenant",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("duplicate_policy", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "patient",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=True),
        sa.Column("patient_name_norm", sa.String(length=324), nullable=True),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "patient_id", "issuer_of_patient_id"),
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index(
            "ix_patient_name_norm", ["tenant_id", "patient_name_norm"], unique=False
        )

    op.create_table(
        "source",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "study",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "patient_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_time", sa.Time(), nullable=True),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_id", sa.String(length=64), nullable=True),
        sa.Column("study_description", sa.String(length=1024), nullable=True),
        sa.Column("referring_physician_name", sa.String(length=324), nullable=True),
        sa.Column("referring_physician_name_norm", sa.String(length=324), nullable=True),
        sa.Column("patient_name", sa.String(length=324), nullable=True),
        sa.Column("patient_name_norm", sa.String(length=324), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column("specific_character_set", sa.String(length=256), nullable=True),
        sa.Column("timezone_offset_from_utc", sa.String(length=16), nullable=True),
        sa.Column("modalities_in_study", sa.String(length=256), nullable=False),
        sa.Column("sop_classes_in_study", sa.Text(), nullable=False),
        sa.Column("number_of_study_related_series", sa.Integer(), nullable=False),
        sa.Column("number_of_study_related_instances", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["patient_pk"],
            ["patient.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "study_instance_uid"),
    )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index(
            "ix_study_accession_number", ["tenant_id", "accession_number"], unique=False
        )
        batch_op.create_index("ix_study_created_at", ["tenant_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_study_date", ["tenant_id", "study_date", "study_time"], unique=False
        )
        batch_op.create_index("ix_study_patient_id", ["tenant_id", "patient_id"], unique=False)
        batch_op.create_index(
            "ix_study_patient_name_norm", ["tenant_id", "patient_name_norm"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_study_patient_pk"), ["patient_pk"], unique=False)

    op.create_table(
        "series",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("study_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(length=1024), nullable=True),
        sa.Column("series_date", sa.Date(), nullable=True),
        sa.Column("series_time", sa.Time(), nullable=True),
        sa.Column("body_part_examined", sa.String(length=64), nullable=True),
        sa.Column("performed_procedure_step_start_date", sa.Date(), nullable=True),
        sa.Column("performed_procedure_step_start_time", sa.Time(), nullable=True),
        sa.Column("number_of_series_related_instances", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["study_pk"],
            ["study.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "series_instance_uid"),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index("ix_series_modality", ["tenant_id", "modality"], unique=False)
        batch_op.create_index("ix_series_study", ["study_pk", "series_number"], unique=False)

    op.create_table(
        "instance",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("study_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "series_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "source_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("content_date", sa.Date(), nullable=True),
        sa.Column("content_time", sa.Time(), nullable=True),
        sa.Column("blob_key", sa.String(length=160), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["series_pk"],
            ["series.id"],
        ),
        sa.ForeignKeyConstraint(
            ["source_pk"],
            ["source.id"],
        ),
        sa.ForeignKeyConstraint(
            ["study_pk"],
            ["study.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "sop_instance_uid"),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index("ix_instance_blob_key", ["blob_key"], unique=False)
        batch_op.create_index("ix_instance_created_at", ["tenant_id", "created_at"], unique=False)
        batch_op.create_index("ix_instance_series", ["series_pk", "instance_number"], unique=False)
        batch_op.create_index("ix_instance_study_source", ["study_pk", "source_pk"], unique=False)

    op.create_table(
        "instance_metadata",
        sa.Column(
            "instance_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("dicom_json", sa.LargeBinary(), nullable=False),
        sa.Column("frame_offsets", sa.LargeBinary(), nullable=True),
        sa.Column("pixel_data_vr", sa.String(length=2), nullable=True),
        sa.ForeignKeyConstraint(["instance_pk"], ["instance.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("instance_pk"),
    )


def downgrade() -> None:

    op.drop_table("instance_metadata")
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_study_source")
        batch_op.drop_index("ix_instance_series")
        batch_op.drop_index("ix_instance_created_at")
        batch_op.drop_index("ix_instance_blob_key")

    op.drop_table("instance")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index("ix_series_study")
        batch_op.drop_index("ix_series_modality")

    op.drop_table("series")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_patient_pk"))
        batch_op.drop_index("ix_study_patient_name_norm")
        batch_op.drop_index("ix_study_patient_id")
        batch_op.drop_index("ix_study_date")
        batch_op.drop_index("ix_study_created_at")
        batch_op.drop_index("ix_study_accession_number")

    op.drop_table("study")
    op.drop_table("source")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_name_norm")

    op.drop_table("patient")
    op.drop_table("tenant")
