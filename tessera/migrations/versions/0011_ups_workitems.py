"""UPS-RS workitems: a Workitem (SOP Instance) UID per scheduled procedure step, and the
Transaction UID of the performer that claimed the order over UPS-RS

Revision ID: 0011_ups_workitems
Revises: 0006_orders
Create Date: 2026-12-01
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0011_ups_workitems"
down_revision = "0006_orders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_procedure_step") as batch:
        batch.add_column(sa.Column("workitem_uid", sa.String(64), nullable=True))
        batch.add_column(sa.Column("transaction_uid", sa.String(64), nullable=True))
    # Steps scheduled before this revision get their workitem UID now (2.25 UUID form).
    step = sa.table(
        "scheduled_procedure_step", sa.column("id", sa.Integer), sa.column("workitem_uid")
    )
    conn = op.get_bind()
    for (step_pk,) in conn.execute(sa.select(step.c.id).where(step.c.workitem_uid.is_(None))):
        conn.execute(
            step.update()
            .where(step.c.id == step_pk)
            .values(workitem_uid=f"2.25.{uuid.uuid4().int}")
        )
    op.create_index(
        "ux_sps_workitem_uid",
        "scheduled_procedure_step",
        ["tenant_id", "workitem_uid"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_sps_workitem_uid", table_name="scheduled_procedure_step")
    with op.batch_alter_table("scheduled_procedure_step") as batch:
        batch.drop_column("transaction_uid")
        batch.drop_column("workitem_uid")
