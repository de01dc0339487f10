"""Order coercion over the real index (SQLite and PostgreSQL), in process: an order attach
and identity changes compose per keyword (the later wins, in either order); the order's
values go to its own source's instances and per-source rows only; a later source's first
instance in the study gets the study-wide values, never the order's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from tessera.archive import Archive
from tessera.index import identity_changes as ic
from tessera.index.models import Patient
from tessera.index.query import Level, Query
from tessera.index.query_sql import run_query
from tessera.index.retrieve import resolve_instances
from tessera.index.sources import add_source
from tessera.scope import Scope, full_scope
from tessera.services import orders as o
from tessera.services.ingest import ingest_file
from tessera.synthetic import header_only_instance
from tests.conftest import migrated_archive


@pytest.fixture
def world(tmp_path, database_url):  # type: ignore[no-untyped-def]
    archive = migrated_archive(tmp_path / "data", database_url)
    tenant = archive.default_tenant.id
    with archive.database.write() as conn:
        sources = {name: add_source(conn, tenant, name) for name in ("ClinicA", "ClinicB")}
    yield archive, tenant, sources
    archive.close()


def _store(archive: Archive, source_pk: int, tmp: Path, **attrs: object) -> None:
    data = header_only_instance({"Modality": "CT", "InstanceNumber": 1, **attrs})
    path = tmp / f"{hashlib.sha1(data).hexdigest()}.dcm"
    path.write_bytes(data)
    scope = full_scope(archive.default_tenant.id, "admin")
    outcome = ingest_file(archive, scope, path, hashlib.sha256(data).hexdigest(), source_pk)
    assert outcome.stored, outcome.message


def _study(archive: Archive, scope: Scope, uid: str) -> tuple:
    query = Query(Level.STUDY)
    query.add_key("StudyInstanceUID", uid)
    with archive.database.read() as conn:
        items = run_query(conn, scope, query).items
    if not items:
        return ()
    item = items[0]

    def value(tag: str) -> object:
        values = item.get(tag, {}).get("Value", [None])
        return values[0]["Alphabetic"] if isinstance(values[0], dict) else values[0]

    return value("00100010"), value("00100020"), value("00080050")


def _sent(archive: Archive, scope: Scope, uid: str) -> dict[str, dict | None]:
    with archive.database.read() as conn:
        return {i.sop_instance_uid: i.coercion for i in resolve_instances(conn, scope, uid)}


def test_attach_and_identity_changes_compose_per_keyword(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, sources = world
    admin = full_scope(tenant, "admin")
    only_a = Scope(tenant, frozenset({sources["ClinicA"]}), principal="a")
    only_b = Scope(tenant, frozenset({sources["ClinicB"]}), principal="b")
    with archive.database.write() as conn:
        order, _ = o.create_order(
            conn,
            admin,
            {
                "accession_number": "ORD-1",
                "patient_id": "MRN-1",
                "patient_name": "ORDERED^NAME",
                "source": "ClinicA",
            },
        )
    uid = order.study_instance_uid
    common = {"StudyInstanceUID": uid, "PatientID": "MRN-1", "PatientName": "TYPED^NAME"}
    # 1. An identity correction before the images attach... (a first study of MRN-1).
    _store(
        archive,
        sources["ClinicA"],
        tmp_path,
        StudyInstanceUID="2.25.501",
        PatientID="MRN-1",
        PatientName="TYPED^NAME",
        SeriesInstanceUID="2.25.502",
        SOPInstanceUID="2.25.503",
    )
    with archive.database.write() as conn:
        pk = conn.execute(select(Patient.id).where(Patient.patient_id == "MRN-1")).scalar_one()
        ic.correct_patient(conn, admin, pk, {"patient_name": "CORRECTED^FIRST"})
    # 2. ...then the order's images (ClinicA): the order's values are the later ones.
    _store(
        archive,
        sources["ClinicA"],
        tmp_path,
        **common,
        AccessionNumber="MOD-ACC",
        SeriesInstanceUID="2.25.511",
        SOPInstanceUID="2.25.512",
    )
    assert _study(archive, admin, uid) == ("ORDERED^NAME", "MRN-1", "ORD-1")
    assert _study(archive, only_a, uid) == ("ORDERED^NAME", "MRN-1", "ORD-1")
    sent = _sent(archive, admin, uid)["2.25.512"]
    assert sent is not None
    assert (sent["PatientName"], sent["AccessionNumber"]) == ("ORDERED^NAME", "ORD-1")
    # 3. ClinicB sends an instance of the same study: its own values, nothing of the order.
    _store(
        archive,
        sources["ClinicB"],
        tmp_path,
        **{**common, "PatientName": "BRAVO^NAME"},
        AccessionNumber="B-ACC",
        SeriesInstanceUID="2.25.521",
        SOPInstanceUID="2.25.522",
    )
    assert _study(archive, only_b, uid) == ("BRAVO^NAME", "MRN-1", "B-ACC")
    assert "AccessionNumber" not in (_sent(archive, only_b, uid)["2.25.522"] or {})
    assert _study(archive, only_a, uid) == ("ORDERED^NAME", "MRN-1", "ORD-1")
    # 4. A correction after the attach: it wins for the patient keywords, everywhere; the
    #    order's accession number stays on ClinicA's instances and rows.
    with archive.database.write() as conn:
        ic.correct_patient(conn, admin, pk, {"patient_name": "CORRECTED^LATER"})
    assert _study(archive, only_a, uid) == ("CORRECTED^LATER", "MRN-1", "ORD-1")
    assert _study(archive, only_b, uid) == ("CORRECTED^LATER", "MRN-1", "B-ACC")
    after = _sent(archive, admin, uid)
    assert after["2.25.512"] is not None and after["2.25.522"] is not None
    assert (after["2.25.512"]["PatientName"], after["2.25.512"]["AccessionNumber"]) == (
        "CORRECTED^LATER",
        "ORD-1",
    )
    assert after["2.25.522"]["PatientName"] == "CORRECTED^LATER"
    assert "AccessionNumber" not in after["2.25.522"]
    # 5. Another series of ClinicA after all that: its per-source row keeps the same values.
    _store(
        archive,
        sources["ClinicA"],
        tmp_path,
        **common,
        AccessionNumber="MOD-ACC",
        SeriesInstanceUID="2.25.531",
        SOPInstanceUID="2.25.532",
    )
    assert _study(archive, only_a, uid) == ("CORRECTED^LATER", "MRN-1", "ORD-1")
