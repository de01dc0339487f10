"""UPS-RS subscriptions (PS3.18 §11.10-11.12)

Revision ID: 0015_upssub_ups_subscriptions
Revises: 0014_identity_changes
Create Date: 2026-12-01

- ups_subscription: which AE title hears of which workitems (one workitem, the worklist, or
  the worklist filtered by matching keys), with the deletion lock asked for and when a
  global subscription was suspended (tessera/index/ups_subscriptions.py).

No existing row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_upssub_ups_subscriptions"
down_revision = "0014_identity_changes"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ups_subscription",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ae_title", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("workitem_uid", sa.String(64), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("deletion_lock", sa.Boolean(), nullable=False),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("principal", sa.String(160), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "ae_title", "kind", "workitem_uid"),
    )


def downgrade() -> None:
    op.drop_table("ups_subscription")
