"""DIMSE peers: the tenants' AE titles and the remote AEs each tenant knows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dimse_ae_title",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ae_title"),
    )
    with op.batch_alter_table("dimse_ae_title", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dimse_ae_title_tenant_id"), ["tenant_id"])

    op.create_table(
        "dimse_peer",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("upload_source_pk", _KEY, nullable=True),
        sa.Column("may_store", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("may_query", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "may_be_move_destination", sa.Boolean(), server_default=sa.true(), nullable=False
        ),
        sa.Column("description", sa.String(length=256), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.ForeignKeyConstraint(["upload_source_pk"], ["source.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "ae_title"),
    )
    op.create_table(
        "dimse_peer_query_source",
        sa.Column("peer_pk", _KEY, nullable=False),
        sa.Column("source_pk", _KEY, nullable=False),
        sa.ForeignKeyConstraint(["peer_pk"], ["dimse_peer.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_pk"], ["source.id"]),
        sa.PrimaryKeyConstraint("peer_pk", "source_pk"),
    )


def downgrade() -> None:
    op.drop_table("dimse_peer_query_source")
    op.drop_table("dimse_peer")
    with op.batch_alter_table("dimse_ae_title", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dimse_ae_title_tenant_id"))
    op.drop_table("dimse_ae_title")
