"""query engine indexes (QIDO-RS / C-FIND)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

- instance.bits_allocated (a QIDO-RS instance default attribute) and
  instance.acquisition_datetime (a DT matching key), filled at ingest.
- ix_instance_series_source: source-locked series searches (EXISTS and counts).
- PostgreSQL only: varchar_pattern_ops indexes so prefix wildcards (LIKE 'SMI%') use an
  index whatever the database collation, and the study list order (newest first, undated
  last) as an index read in order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PATTERN_INDEXES = (
    ("ix_study_patient_name_pattern", "study", "patient_name_norm"),
    ("ix_patient_name_pattern", "patient", "patient_name_norm"),
    ("ix_study_patient_id_pattern", "study", "patient_id"),
    ("ix_study_accession_number_pattern", "study", "accession_number"),
)


def upgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bits_allocated", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("acquisition_datetime", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_instance_series_source", ["series_pk", "source_pk"], unique=False)
    if op.get_context().dialect.name == "postgresql":
        for name, table, column in _PATTERN_INDEXES:
            op.create_index(
                name,
                table,
                ["tenant_id", column],
                postgresql_ops={column: "varchar_pattern_ops"},
            )
        op.create_index(
            "ix_study_date_desc",
            "study",
            [
                "tenant_id",
                sa.text("study_date DESC NULLS LAST"),
                sa.text("study_time DESC NULLS LAST"),
                sa.text("id DESC"),
            ],
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_index("ix_study_date_desc", table_name="study")
        for name, table, _column in _PATTERN_INDEXES:
            op.drop_index(name, table_name=table)
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_series_source")
        batch_op.drop_column("acquisition_datetime")
        batch_op.drop_column("bits_allocated")
