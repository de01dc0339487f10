"""UPS progress: the Procedure Step Progress a performer reports on its workitem

Revision ID: 0017_orders13_ups_progress
Revises: 0016_ordspeed_worklist_indexes
Create Date: 2026-12-01

- scheduled_procedure_step.progress (Procedure Step Progress (0074,1004), DS) and
  progress_description (Procedure Step Progress Description (0074,1006), ST): set by Update
  Workitem while the workitem is IN PROGRESS; a change is a UPS Progress Report event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_orders13_ups_progress"
down_revision = "0016_ordspeed_worklist_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch (on SQLite a batch copies the table, and dropping the old
    # one would drop migration 0016's planner statistics with it).
    op.add_column("scheduled_procedure_step", sa.Column("progress", sa.String(16), nullable=True))
    op.add_column(
        "scheduled_procedure_step",
        sa.Column("progress_description", sa.String(1024), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("scheduled_procedure_step") as batch:
        batch.drop_column("progress_description")
        batch.drop_column("progress")
