"""staged DIMSE peers (a reviewed DICOM listener): their C-STOREs go into upload sessions

Revision ID: 0013_staged_listener
Revises: 0012_workflow_hl7
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_staged_listener"
down_revision = "0012_workflow_hl7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dimse_peer") as batch_op:
        batch_op.add_column(
            sa.Column("staged", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("upload_session") as batch_op:
        # The calling AE title of the staged peer whose association opened the session;
        # NULL for sessions a user opened.
        batch_op.add_column(sa.Column("received_from", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload_session") as batch_op:
        batch_op.drop_column("received_from")
    with op.batch_alter_table("dimse_peer") as batch_op:
        batch_op.drop_column("staged")
