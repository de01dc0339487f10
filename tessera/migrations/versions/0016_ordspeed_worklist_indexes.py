"""worklist speed: a station + start index for the worklist's commonest query, and SQLite
planner statistics for the order tables

Revision ID: 0016_ordspeed_worklist_indexes
Revises: 0015_upssub_ups_subscriptions
Create Date: 2026-12-01

- ix_sps_station_start (tenant_id, scheduled_station_ae_title, start_date, start_time)
  replaces ix_sps_station (tenant_id, scheduled_station_ae_title), its prefix: a modality
  asks for its own station's steps of one day.
- SQLite only: typical statistics for the indexes of procedure_order and
  scheduled_procedure_step in sqlite_stat1 (SQLite's "manual control of query plans using
  SQLITE_STAT tables", https://sqlite.org/optoverview.html#manctrl). Without statistics
  SQLite takes every `tenant_id = ?` as selective, so it walks a whole tenant's steps in
  start order to find one accession number, or a tenant's orders in creation order to find
  one patient. The figures describe a site with 100,000 orders in one tenant; they are
  fixed (plans do not change as the tables grow) until an ANALYZE replaces them.
"""

from __future__ import annotations

from alembic import op

revision = "0016_ordspeed_worklist_indexes"
down_revision = "0015_upssub_ups_subscriptions"
branch_labels = None
depends_on = None

ROWS = {"procedure_order": 100_000, "scheduled_procedure_step": 110_000}
# Distinct values a column typically has (across the table); a unique index's last column
# is exact anyway. Columns not named here are taken as unique.
DISTINCT = {
    "tenant_id": 1,
    "source_pk": 2,
    "issuer_of_accession_number": 1,
    "status": 7,
    "patient_id": 50_000,
    "patient_name_norm": 30_000,
    "study_pk": 90_000,
    "start_date": 1_000,
    "start_time": 40,
    "scheduled_station_ae_title": 20,
}


def _index_stat(rows: int, columns: list[str], unique: bool) -> str:
    """sqlite_stat1's `stat` text: the rows, then the rows per value of each column prefix."""
    figures = [rows]
    combinations = 1
    for number, column in enumerate(columns):
        combinations *= DISTINCT.get(column, rows)
        last = number == len(columns) - 1
        figures.append(1 if unique and last else max(1, rows // combinations))
    return " ".join(str(f) for f in figures)


def _sqlite_statistics() -> None:
    conn = op.get_bind()
    # ANALYZE of the (index-less) schema table creates sqlite_stat1 when it is missing.
    conn.exec_driver_sql("ANALYZE sqlite_schema")
    for table, rows in ROWS.items():
        conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = ?", (table,))
        indexes = conn.exec_driver_sql(f"PRAGMA index_list('{table}')").all()
        for index in indexes:
            name, unique = index[1], bool(index[2])
            columns = [
                info[2] for info in conn.exec_driver_sql(f"PRAGMA index_info('{name}')").all()
            ]
            conn.exec_driver_sql(
                "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
                (table, name, _index_stat(rows, columns, unique)),
            )


def upgrade() -> None:
    op.create_index(
        "ix_sps_station_start",
        "scheduled_procedure_step",
        ["tenant_id", "scheduled_station_ae_title", "start_date", "start_time"],
    )
    op.drop_index("ix_sps_station", "scheduled_procedure_step")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_statistics()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        conn = op.get_bind()
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1'"
        ).first()
        if exists:
            for table in ROWS:
                conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = ?", (table,))
    op.create_index(
        "ix_sps_station", "scheduled_procedure_step", ["tenant_id", "scheduled_station_ae_title"]
    )
    op.drop_index("ix_sps_station_start", "scheduled_procedure_step")
