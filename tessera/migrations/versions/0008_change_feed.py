"""change feed (transactional outbox), webhooks, routing rules, e-mail notifications

Revision ID: 0008_change_feed
Revises: 0007_upload_sessions
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_change_feed"
down_revision = "0007_upload_sessions"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)


def _created_at() -> sa.Column:
    return sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "change_counter",
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), primary_key=True),
        sa.Column("last_seq", SEQ, nullable=False),
    )
    op.create_table(
        "change_event",
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("seq", SEQ, autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=True),
        sa.Column("series_instance_uid", sa.String(64), nullable=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=True),
        sa.Column("detail", sa.LargeBinary(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("tenant_id", "seq"),
    )
    op.create_table(
        "webhook_subscription",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("modalities", sa.Text(), nullable=False),
        sa.Column("order_statuses", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_seq", SEQ, nullable=False),
        sa.Column("created_by", sa.String(160), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_subscription_tenant_id", "webhook_subscription", ["tenant_id"])
    op.create_table(
        "webhook_source",
        sa.Column(
            "subscription_pk",
            KEY,
            sa.ForeignKey("webhook_subscription.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=False),
        sa.PrimaryKeyConstraint("subscription_pk", "source_pk"),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column(
            "subscription_pk",
            KEY,
            sa.ForeignKey("webhook_subscription.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("change_seq", SEQ, nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscription_pk", "change_seq"),
    )
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_delivery_tenant", "webhook_delivery", ["tenant_id", "id"])
    op.create_table(
        "webhook_attempt",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column(
            "delivery_pk",
            KEY,
            sa.ForeignKey("webhook_delivery.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempted_at", TZ, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(512), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_attempt_delivery_pk", "webhook_attempt", ["delivery_pk"])
    op.create_table(
        "route_rule",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("modalities", sa.Text(), nullable=False),
        sa.Column("destination_kind", sa.String(16), nullable=False),
        sa.Column("destination_url", sa.String(2048), nullable=False),
        sa.Column("destination_authorization", sa.String(1024), nullable=False),
        sa.Column("ae_title", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("calling_ae_title", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_seq", SEQ, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_table(
        "route_source",
        sa.Column(
            "rule_pk", KEY, sa.ForeignKey("route_rule.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=False),
        sa.PrimaryKeyConstraint("rule_pk", "source_pk"),
    )
    op.create_table(
        "route_delivery",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column(
            "rule_pk", KEY, sa.ForeignKey("route_rule.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.Column("last_error", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_pk", "sop_instance_uid"),
    )
    op.create_index("ix_route_delivery_due", "route_delivery", ["status", "next_attempt_at"])
    op.create_index(
        "ix_route_delivery_rule_study", "route_delivery", ["rule_pk", "study_instance_uid"]
    )
    op.create_table(
        "notification_subscription",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("user_id", KEY, sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("last_seq", SEQ, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(512), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_notification_subscription_user_id", "notification_subscription", ["user_id"]
    )


def downgrade() -> None:
    for table in (
        "notification_subscription",
        "route_delivery",
        "route_source",
        "route_rule",
        "webhook_attempt",
        "webhook_delivery",
        "webhook_source",
        "webhook_subscription",
        "change_event",
        "change_counter",
    ):
        op.drop_table(table)
