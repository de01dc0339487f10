"""patient identity: issuer-qualified IDs, source default issuers, other IDs, links

Revision ID: 0010_identity
Revises: 0009_reports
Create Date: 2026-12-01

- source.default_issuer_of_patient_id: the Issuer of Patient ID given to instances of the
  source that carry none ('' = none), so two sites' identical local IDs never collide.
- other_patient_id: the identities an instance names in its Other Patient IDs Sequence
  (link candidates), per patient and source.
- patient.person_pk: the person (master patient) a linked identity belongs to: the lowest
  patient id of its linked group; NULL for an identity linked to nothing.
- patient_link: the confirmed links (edges between two identities of one tenant);
  patient_link_event: their history (link / unlink, who, when, why).
- tenant.linked_matching: a Patient ID search returns the studies of linked identities too.

Existing rows are kept as they are: a patient keeps its (Patient ID, Issuer) key (an empty
issuer stays empty), nothing is linked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_identity"
down_revision = "0009_reports"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("source") as batch:
        batch.add_column(
            sa.Column(
                "default_issuer_of_patient_id", sa.String(64), nullable=False, server_default=""
            )
        )
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(
            sa.Column("linked_matching", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("person_pk", KEY, nullable=True))
    op.create_index("ix_patient_person", "patient", ["tenant_id", "person_pk"])
    op.create_index("ix_patient_patient_id", "patient", ["tenant_id", "patient_id"])
    op.create_table(
        "other_patient_id",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("patient_pk", KEY, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_pk", "source_pk", "patient_id", "issuer_of_patient_id"),
    )
    op.create_index(
        "ix_other_patient_id_key",
        "other_patient_id",
        ["tenant_id", "patient_id", "issuer_of_patient_id"],
    )
    op.create_table(
        "patient_link",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("patient_pk_low", KEY, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("patient_pk_high", KEY, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_pk_low", "patient_pk_high"),
    )
    op.create_index("ix_patient_link_high", "patient_link", ["patient_pk_high"])
    op.create_table(
        "patient_link_event",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("patient_pk_low", KEY, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("patient_pk_high", KEY, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_patient_link_event_pair", "patient_link_event", ["patient_pk_low", "patient_pk_high"]
    )


def downgrade() -> None:
    op.drop_table("patient_link_event")
    op.drop_table("patient_link")
    op.drop_table("other_patient_id")
    op.drop_index("ix_patient_patient_id", "patient")
    op.drop_index("ix_patient_person", "patient")
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("person_pk")
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("linked_matching")
    with op.batch_alter_table("source") as batch:
        batch.drop_column("default_issuer_of_patient_id")
