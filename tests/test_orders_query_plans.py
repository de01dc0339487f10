"""What makes order and worklist searches fast (issue 13), checked on the real index:

- a patient name prefix is matched literally ('*', '?', '%', '_' in it are characters) on
  SQLite and PostgreSQL, in a form that uses the name index;
- on SQLite (whose plans come from the fixed statistics of migration 0016) the worklist and
  order searches start from the index of what they filter on, never from a walk of the
  whole tenant;
- the lookup that attaches an arriving instance to its open order (by Study Instance UID,
  by Accession Number) is an index search on SQLite and an index scan on PostgreSQL;
- migration 0016 goes up and down;
- a workitem answers as DICOM JSON that pydicom reads back unchanged.

Speed figures themselves are in benchmarks/orders.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest
from alembic import command
from pydicom.dataset import Dataset
from sqlalchemy import Connection, create_engine, inspect, text

from tessera.archive import Archive
from tessera.dicomweb.workitem_dataset import workitem_json
from tessera.dicomweb.workitem_query import parse_workitem_search
from tessera.index.migrate import alembic_config
from tessera.index.order_store import OrderSearch
from tessera.index.sources import add_source
from tessera.index.worklist import worklist_statement
from tessera.scope import full_scope
from tessera.services import orders as o
from tests.conftest import migrated_archive

NAMES = ["SMITH^JO", "SM*TH^AL", "SMI_X^BO", "SMI%Y^CY", "SMYTHE^DI", "Smithers^Ed", "JONES^FA"]


@pytest.fixture
def archive(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    archive = migrated_archive(tmp_path / "data", database_url)
    scope = full_scope(archive.default_tenant.id, "test")
    with archive.database.write() as conn:
        add_source(conn, scope.tenant_id, "ClinicA")
        for number, name in enumerate(NAMES):
            o.create_order(
                conn,
                scope,
                {
                    "accession_number": f"A{number}",
                    "patient_name": name,
                    "patient_id": f"P{number}",
                    "source": "ClinicA",
                    "scheduled_procedure_steps": [
                        {
                            "start": f"2026-12-0{1 + number % 2}T09:00:00",
                            "modality": "CT",
                            "scheduled_station_ae_title": f"CT{number % 2}",
                        }
                    ],
                },
            )
    yield archive
    archive.close()


def _names(archive: Archive, prefix: str) -> list[str]:
    scope = full_scope(archive.default_tenant.id, "test")
    with archive.database.read() as conn:
        found = o.search_orders(
            conn, scope, OrderSearch(patient_name_prefix=prefix, sort="patient_name")
        )
    return sorted(order.patient_name for order in found)


def test_name_prefix_is_literal_and_ignores_case(archive: Archive) -> None:
    assert _names(archive, "SMITH") == ["SMITH^JO", "Smithers^Ed"]
    assert _names(archive, "SM*") == ["SM*TH^AL"]
    assert _names(archive, "SMI_") == ["SMI_X^BO"]
    assert _names(archive, "SMI%") == ["SMI%Y^CY"]
    assert _names(archive, "SM") == [
        "SM*TH^AL",
        "SMI%Y^CY",
        "SMITH^JO",
        "SMI_X^BO",
        "SMYTHE^DI",
        "Smithers^Ed",
    ]
    assert _names(archive, "[") == []


def _plan(conn: Connection, statement) -> str:  # type: ignore[no-untyped-def]
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled)).all()
    return "\n".join(row[-1] for row in rows)


def _order_search_plan(archive: Archive, search: OrderSearch) -> str:
    scope = full_scope(archive.default_tenant.id, "test")
    captured = []
    from tessera.index import order_store

    real = order_store.load_orders
    order_store.load_orders = lambda conn, statement: captured.append(statement) or []  # type: ignore[assignment,func-returns-value]
    try:
        with archive.database.read() as conn:
            order_store.search_orders(conn, scope, search)
            return _plan(conn, captured[0])
    finally:
        order_store.load_orders = real  # type: ignore[assignment]


def _worklist_plan(archive: Archive, query_string: str) -> str:
    scope = full_scope(archive.default_tenant.id, "test")
    query = parse_workitem_search(query_string, 100)
    with archive.database.read() as conn:
        return _plan(conn, worklist_statement("sqlite", scope, query))


def test_sqlite_searches_start_from_the_index_of_their_filter(
    archive: Archive, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL plans come from its own statistics")
    station_day = _worklist_plan(
        archive,
        "ScheduledStationAETitle=CT1&ScheduledProcedureStepStartDateTime=20261202-20261202",
    )
    assert "ix_sps_station_start (tenant_id=? AND scheduled_station_ae_title=?" in station_day
    accession = _worklist_plan(archive, "AccessionNumber=A3")
    assert accession.startswith("SEARCH procedure_order USING INDEX ix_order_accession")
    name = _worklist_plan(archive, "PatientName=SMITH*")
    assert "ix_order_patient_name_norm (tenant_id=? AND patient_name_norm>?" in name
    workitem = _worklist_plan(archive, "SOPInstanceUID=2.25.7")
    assert workitem.startswith("SEARCH scheduled_procedure_step USING INDEX ux_sps_workitem_uid")
    assert "(tenant_id=? AND workitem_uid=?)" in workitem

    by_accession = _order_search_plan(archive, OrderSearch(accession_number="A3"))
    assert by_accession.startswith("SEARCH procedure_order USING INDEX ix_order_accession")
    by_name = _order_search_plan(archive, OrderSearch(patient_name_prefix="SMITH"))
    assert "ix_order_patient_name_norm (tenant_id=? AND patient_name_norm>?" in by_name
    by_patient = _order_search_plan(archive, OrderSearch(patient_id="P3"))
    assert by_patient.startswith("SEARCH procedure_order USING INDEX ix_order_patient_id")


def test_0016_up_and_down(database_url: str) -> None:
    engine = create_engine(database_url)
    config = alembic_config(database_url)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0016_ordspeed_worklist_indexes")
        conn.commit()
    indexes = {i["name"] for i in inspect(engine).get_indexes("scheduled_procedure_step")}
    assert "ix_sps_station_start" in indexes and "ix_sps_station" not in indexes
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            stats = dict(
                conn.execute(
                    text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'procedure_order'")
                ).all()
            )
        assert stats["ix_order_accession"] == "100000 100000 1"
        assert stats["ix_order_status"].startswith("100000 100000 ")
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0015_upssub_ups_subscriptions")
        conn.commit()
    indexes = {i["name"] for i in inspect(engine).get_indexes("scheduled_procedure_step")}
    assert "ix_sps_station" in indexes and "ix_sps_station_start" not in indexes
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'procedure_order'")
            ).scalar_one()
        assert left == 0
    engine.dispose()


ROW = {
    "sps_workitem_uid": "2.25.1",
    "patient_name": "Yamada^Tarou=山田^太郎=やまだ^たろう",
    "patient_id": "P1",
    "issuer_of_patient_id": "",
    "patient_birth_date": date(1970, 1, 2),
    "patient_sex": "M",
    "study_instance_uid": "1.2.3",
    "accession_number": "A1",
    "issuer_of_accession_number": "HOSP",
    "requested_procedure_code_value": "CTCHEST",
    "requested_procedure_coding_scheme": "L",
    "requested_procedure_code_meaning": "CT chest",
    "requested_procedure_description": "CT CHEST",
    "requested_procedure_id": "RP1",
    "reason_for_requested_procedure": "cough",
    "priority": "STAT",
    "updated_at": datetime(2026, 12, 1, 8, 30, tzinfo=UTC),
    "sps_description": "chest",
    "sps_scheduled_station_ae_title": "CT1",
    "sps_scheduled_station_name": "",
    "sps_modality": "CT",
    "sps_scheduled_performing_physician_name": "Doe^A",
    "sps_start_date": date(2026, 12, 1),
    "sps_start_time": time(8, 0),
    "status": "IN_PROGRESS",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "patient_name": "",
            "issuer_of_accession_number": "",
            "requested_procedure_code_value": "",
            "sps_scheduled_performing_physician_name": "",
            "sps_scheduled_station_ae_title": "",
            "sps_modality": "ZZ",
            "sps_start_time": None,
            "patient_birth_date": None,
            "updated_at": None,
            "status": "CANCELLED",
            "priority": "LOW",
        },
        {"patient_name": "Doe^J==Do^J", "sps_start_date": None, "status": "SCHEDULED"},
        {"sps_progress": "62.5", "sps_progress_description": "series 4 of 5"},
        {"sps_progress": "40", "sps_progress_description": None},
    ],
)
def test_workitem_json_reads_back_unchanged(changes: dict) -> None:
    row = {**ROW, **changes}
    answer = workitem_json(row)  # type: ignore[arg-type]
    assert Dataset.from_json(answer).to_json_dict() == answer
    ds = Dataset.from_json(answer)
    assert ds.SOPInstanceUID == "2.25.1"
    assert (
        ds.ProcedureStepState
        == {
            "IN_PROGRESS": "IN PROGRESS",
            "CANCELLED": "CANCELED",
            "SCHEDULED": "SCHEDULED",
        }[row["status"]]
    )
    assert str(ds.get("PatientName", "") or "") == row["patient_name"]
    request = ds.ReferencedRequestSequence[0]
    assert request.AccessionNumber == "A1"
    assert len(request.IssuerOfAccessionNumberSequence) == (
        1 if row["issuer_of_accession_number"] else 0
    )


def _attach_lookup_plans(archive: Archive) -> dict[str, str]:
    """The plans of attach_on_ingest's two lookups (tessera.services.orders), with the
    values an arriving instance gives them: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's
    EXPLAIN with sequential scans priced out (a handful of rows would otherwise be read
    whole: the question is whether an index serves the lookup)."""
    tenant_id = archive.default_tenant.id
    with archive.database.read() as conn:
        source_pk = conn.execute(
            text("SELECT id FROM source WHERE tenant_id = :t AND name = 'ClinicA'"),
            {"t": tenant_id},
        ).scalar_one()
        study_uid = conn.execute(
            text("SELECT study_instance_uid FROM procedure_order WHERE accession_number = 'A3'")
        ).scalar_one()
        values = {"tenant_id": tenant_id, "source_pk": source_pk}
        lookups = {
            "study_uid": o._ORDER_BY_STUDY_UID.params(**values, uid=study_uid),
            "accession": o._ORDERS_BY_ACCESSION.params(**values, accession="A3"),
        }
        if conn.dialect.name == "sqlite":
            return {name: _plan(conn, statement) for name, statement in lookups.items()}
        conn.exec_driver_sql("ANALYZE procedure_order")
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plans = {}
        for name, statement in lookups.items():
            compiled = statement.compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True}
            )
            rows = conn.exec_driver_sql("EXPLAIN " + str(compiled)).all()
            plans[name] = "\n".join(row[0] for row in rows)
        return plans


def test_the_order_attach_lookup_uses_an_index(archive: Archive, database_url: str) -> None:
    """An instance that arrives with a Study Instance UID or an Accession Number finds its
    open order through an index (the lookup runs for every stored instance)."""
    plans = _attach_lookup_plans(archive)
    by_uid, by_accession = plans["study_uid"], plans["accession"]
    if database_url.startswith("sqlite"):
        # The unique (tenant_id, study_instance_uid) constraint's index, both columns used.
        assert by_uid.startswith("SEARCH procedure_order USING INDEX "), by_uid
        assert "(tenant_id=? AND study_instance_uid=?)" in by_uid, by_uid
        assert by_accession == (
            "SEARCH procedure_order USING INDEX ix_order_accession "
            "(tenant_id=? AND accession_number=?)"
        ), by_accession
    else:
        assert "Seq Scan" not in by_uid and "Seq Scan" not in by_accession, plans
        assert "Index Scan using procedure_order_tenant_id_study_instance_uid_key" in by_uid
        assert "Index Cond: ((tenant_id = " in by_uid
        assert "(study_instance_uid)::text = " in by_uid.split("Index Cond:")[1].split("\n")[0]
        assert "Index Scan using ix_order_accession" in by_accession, by_accession
        cond = by_accession.split("Index Cond:")[1].split("\n")[0]
        assert "(accession_number)::text = 'A3'" in cond, by_accession
