"""per-source study and series values (source-locked queries show only their sources' values)

Revision ID: 0005_source_attributes
Revises: 0004
Create Date: 2026-12-01

- study_source / series_source: the study's and series' values as the first instance of each
  source carries them; a source-locked query reads these instead of the study and series
  rows (which keep the first upload's values, maybe of a hidden source).
- Backfill: one row per (study, source) and (series, source) that holds instances, with the
  values of that source's first instance there, read from its stored DICOM JSON.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from tessera.index.source_values import (
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    series_values,
    study_values,
)

revision = "0005_source_attributes"
down_revision = "0004"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PATTERN_INDEXES = (
    ("ix_study_source_patient_name_pattern", "patient_name_norm"),
    ("ix_study_source_patient_id_pattern", "patient_id"),
    ("ix_study_source_accession_number_pattern", "accession_number"),
)
_BATCH = 500


def _key_columns(*parents: str) -> list[sa.Column]:
    columns = [
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant_id", KEY, sa.ForeignKey("tenant.id"), nullable=False),
    ]
    columns += [
        sa.Column(f"{p}_pk", KEY, sa.ForeignKey(f"{p}.id"), nullable=False) for p in parents
    ]
    columns.append(sa.Column("source_pk", KEY, sa.ForeignKey("source.id"), nullable=False))
    return columns


def upgrade() -> None:
    op.create_table(
        "study_source",
        *_key_columns("study"),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_time", sa.Time(), nullable=True),
        sa.Column("accession_number", sa.String(64), nullable=True),
        sa.Column("study_id", sa.String(64), nullable=True),
        sa.Column("study_description", sa.String(1024), nullable=True),
        sa.Column("referring_physician_name", sa.String(324), nullable=True),
        sa.Column("referring_physician_name_norm", sa.String(324), nullable=True),
        sa.Column("patient_name", sa.String(324), nullable=True),
        sa.Column("patient_name_norm", sa.String(324), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(64), nullable=False),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_sex", sa.String(16), nullable=True),
        sa.Column("specific_character_set", sa.String(256), nullable=True),
        sa.Column("timezone_offset_from_utc", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_pk", "source_pk"),
    )
    op.create_index(
        "ix_study_source_date", "study_source", ["tenant_id", "study_date", "study_time"]
    )
    op.create_index(
        "ix_study_source_patient_name_norm", "study_source", ["tenant_id", "patient_name_norm"]
    )
    op.create_index("ix_study_source_patient_id", "study_source", ["tenant_id", "patient_id"])
    op.create_index(
        "ix_study_source_accession_number", "study_source", ["tenant_id", "accession_number"]
    )
    op.create_table(
        "series_source",
        *_key_columns("series", "study"),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(1024), nullable=True),
        sa.Column("series_date", sa.Date(), nullable=True),
        sa.Column("series_time", sa.Time(), nullable=True),
        sa.Column("body_part_examined", sa.String(64), nullable=True),
        sa.Column("performed_procedure_step_start_date", sa.Date(), nullable=True),
        sa.Column("performed_procedure_step_start_time", sa.Time(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("series_pk", "source_pk"),
    )
    op.create_index("ix_series_source_study", "series_source", ["study_pk", "source_pk"])
    if op.get_context().dialect.name == "postgresql":
        for name, column in _PATTERN_INDEXES:
            op.create_index(
                name,
                "study_source",
                ["tenant_id", column],
                postgresql_ops={column: "varchar_pattern_ops"},
            )
        op.create_index(
            "ix_study_source_date_desc",
            "study_source",
            [
                "tenant_id",
                sa.text("study_date DESC NULLS LAST"),
                sa.text("study_time DESC NULLS LAST"),
                sa.text("id DESC"),
            ],
        )
    _backfill(op.get_bind())


def _header(dicom_json: bytes, keywords: tuple[str, ...]) -> Dataset:
    """The few attributes `keywords` names, from an instance's stored DICOM JSON."""
    stored = orjson.loads(dicom_json)
    wanted = {f"{Tag(k):08X}" for k in keywords}
    return Dataset.from_json({tag: stored[tag] for tag in wanted if tag in stored})


def _backfill(conn: sa.Connection) -> None:
    meta = sa.MetaData()
    instance = sa.Table("instance", meta, autoload_with=conn)
    metadata = sa.Table("instance_metadata", meta, autoload_with=conn)
    study_source = sa.Table("study_source", meta, autoload_with=conn)
    series_source = sa.Table("series_source", meta, autoload_with=conn)
    # Rows are inserted in the order of each source's first instance, so row ids keep the
    # order of the sources' first uploads (source-locked queries take the earliest row).
    for table, parents, keywords, values in (
        (study_source, ("study_pk",), STUDY_KEYWORDS, study_values),
        (series_source, ("series_pk", "study_pk"), SERIES_KEYWORDS, series_values),
    ):
        first_pk = sa.func.min(instance.c.id).label("first_pk")
        keys = (instance.c.tenant_id, instance.c.source_pk, *(instance.c[p] for p in parents))
        first = sa.select(first_pk, *keys).group_by(*keys).order_by(first_pk)
        pairs = conn.execute(first).all()
        for start in range(0, len(pairs), _BATCH):
            batch = pairs[start : start + _BATCH]
            stored = dict(
                conn.execute(
                    sa.select(metadata.c.instance_pk, metadata.c.dicom_json).where(
                        metadata.c.instance_pk.in_([p.first_pk for p in batch])
                    )
                ).all()
            )
            rows = []
            for pair in batch:
                header = _header(stored.get(pair.first_pk) or b"{}", keywords)
                row = {"tenant_id": pair.tenant_id, "source_pk": pair.source_pk}
                row.update({p: getattr(pair, p) for p in parents})
                row.update(values(header))
                rows.append(row)
            conn.execute(table.insert(), rows)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_index("ix_study_source_date_desc", table_name="study_source")
        for name, _column in _PATTERN_INDEXES:
            op.drop_index(name, table_name="study_source")
    op.drop_table("series_source")
    op.drop_table("study_source")
