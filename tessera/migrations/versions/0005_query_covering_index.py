"""query engine: covering index for name searches in the study list

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

`PatientName=SMI*` ordered newest first: the query engine picks the page's study keys from
this index alone (name range, date/time order, visibility), then reads only those rows.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_study_name_date",
        "study",
        [
            "tenant_id",
            "patient_name_norm",
            "study_date",
            "study_time",
            "number_of_study_related_instances",
        ],
        postgresql_ops={"patient_name_norm": "varchar_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_study_name_date", table_name="study")
