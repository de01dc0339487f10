"""The query engine under a Scope, on SQLite and PostgreSQL: a source-locked scope sees only
its instances (results, counts, value lists), another tenant's data never appears, and the
results are DICOM JSON that pydicom reads back (what the C-FIND handler does)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydicom import Dataset
from sqlalchemy import insert

from tessera.archive import Archive
from tessera.index.models import Source, Tenant
from tessera.index.query import Level, Query, QueryError, build_match
from tessera.index.query_sql import count_rows, iter_query, run_query
from tessera.index.sources import add_source, source_pk_by_name
from tessera.scope import Scope, full_scope
from tessera.services.ingest import ingest_file
from tessera.synthetic import header_only_instance
from tests.conftest import migrated_archive
from tests.qido_corpus import SYNTHETIC_UIDS, synthetic_instances

A, B = SYNTHETIC_UIDS[0], SYNTHETIC_UIDS[1]
A1, A2 = "2.25.1011", "2.25.1012"


def _ingest(archive: Archive, scope: Scope, data: bytes, source_pk: int, tmp: Path) -> None:
    path = tmp / f"{hashlib.sha1(data).hexdigest()}.dcm"
    path.write_bytes(data)
    outcome = ingest_file(archive, scope, path, hashlib.sha256(data).hexdigest(), source_pk)
    assert outcome.stored, outcome.message


@pytest.fixture
def index(tmp_path, database_url):  # type: ignore[no-untyped-def]
    """An archive holding the synthetic corpus (sources 'default' and 'clinicB') in the
    default tenant, and one study in a second tenant."""
    archive = migrated_archive(tmp_path / "data", database_url)
    tenant_id = archive.default_tenant.id
    with archive.database.write() as conn:
        clinic_b = add_source(conn, tenant_id, "clinicB")
        default = source_pk_by_name(conn, tenant_id, "default")
        other_tenant = conn.execute(
            insert(Tenant).values(name="other", duplicate_policy="reject").returning(Tenant.id)
        ).scalar_one()
        other_source = conn.execute(
            insert(Source)
            .values(tenant_id=other_tenant, name="default", description="")
            .returning(Source.id)
        ).scalar_one()
    scope = full_scope(tenant_id)
    sources = {"default": default, "clinicB": clinic_b}
    for source, data in synthetic_instances():
        _ingest(archive, scope, data, sources[source], tmp_path)
    # The other tenant has a study with the same UID as A and a patient named like A's.
    other = full_scope(other_tenant)
    for number in (1, 2):
        data = header_only_instance(
            {
                "StudyInstanceUID": A,
                "SeriesInstanceUID": A1,
                "PatientName": "SMITH^OTHER",
                "PatientID": "PID-A",
                "Modality": "MR",
                "InstanceNumber": number,
            }
        )
        _ingest(archive, other, data, other_source, tmp_path)
    yield archive, tenant_id, sources, other_tenant
    archive.close()


def run(archive: Archive, scope: Scope, level: Level, **keys: str) -> list[dict]:
    query = Query(level)
    for name, value in keys.items():
        query.add_key(name, value)
    with archive.database.read() as conn:
        return run_query(conn, scope, query, "http://x/dicomweb").items


def uids(items: list[dict], tag: str) -> list[str]:
    return [item[tag]["Value"][0] for item in items]


def value(items: list[dict], uid_tag: str, uid: str, tag: str):  # type: ignore[no-untyped-def]
    item = next(i for i in items if i[uid_tag]["Value"] == [uid])
    return item.get(tag, {}).get("Value")


def test_source_locked_study_search(index) -> None:  # type: ignore[no-untyped-def]
    archive, tenant_id, sources, _ = index
    locked = Scope(tenant_id=tenant_id, source_pks=frozenset({sources["clinicB"]}))
    items = run(archive, locked, Level.STUDY)
    # Study A has one clinicB series (SR, 1 instance); B is all clinicB.
    assert sorted(uids(items, "0020000D")) == [A, B]
    assert value(items, "0020000D", A, "00080061") == ["SR"]
    assert value(items, "0020000D", A, "00201206") == [1]
    assert value(items, "0020000D", A, "00201208") == [1]
    assert value(items, "0020000D", B, "00201208") == [2]
    # Matching on a computed attribute sees only visible series.
    assert run(archive, locked, Level.STUDY, ModalitiesInStudy="CT") == []
    assert uids(run(archive, locked, Level.STUDY, ModalitiesInStudy="SR"), "0020000D") == [A]
    assert run(archive, locked, Level.STUDY, SOPClassesInStudy="1.2.840.10008.5.1.4.1.1.2") == []
    # The full scope sees everything, with the stored counts.
    full = run(archive, full_scope(tenant_id), Level.STUDY)
    assert len(full) == len(SYNTHETIC_UIDS)
    assert value(full, "0020000D", A, "00080061") == ["CT", "SR"]
    assert value(full, "0020000D", A, "00201208") == [4]


def test_source_locked_series_and_instances(index) -> None:  # type: ignore[no-untyped-def]
    archive, tenant_id, sources, _ = index
    locked = Scope(tenant_id=tenant_id, source_pks=frozenset({sources["clinicB"]}))
    series = run(archive, locked, Level.SERIES, StudyInstanceUID=A)
    assert uids(series, "0020000E") == [A2]
    assert run(archive, locked, Level.INSTANCE, SeriesInstanceUID=A1) == []
    instances = run(archive, locked, Level.INSTANCE, StudyInstanceUID=A)
    assert uids(instances, "00080018") == [f"{A2}.1"]
    # Patient level: only patients with a visible instance, counts of visible ones.
    patients = run(archive, locked, Level.PATIENT)
    assert sorted(uids(patients, "00100020")) == ["PID-A", "PID-B"]
    assert value(patients, "00100020", "PID-A", "00201200") == [1]
    assert value(patients, "00100020", "PID-A", "00201202") == [1]
    assert value(patients, "00100020", "PID-A", "00201204") == [1]
    # Attributes from stored metadata come from a visible instance.
    query = Query(Level.STUDY)
    query.add_key("StudyInstanceUID", A)
    query.add_key("ImageType", "")
    with archive.database.read() as conn:
        item = run_query(conn, locked, query).items[0]
    assert item["00080008"]["vr"] == "CS"  # the SR instance has no ImageType: empty


def test_no_sources_sees_nothing(index) -> None:  # type: ignore[no-untyped-def]
    archive, tenant_id, _, _ = index
    nothing = Scope(tenant_id=tenant_id, source_pks=frozenset())
    for level in Level:
        assert run(archive, nothing, level) == []


def test_other_tenant_never_appears(index) -> None:  # type: ignore[no-untyped-def]
    archive, tenant_id, _, other_tenant = index
    mine = full_scope(tenant_id)
    assert run(archive, mine, Level.STUDY, PatientName="SMITH^OTHER") == []
    items = run(archive, mine, Level.STUDY, StudyInstanceUID=A)
    assert value(items, "0020000D", A, "00100010") == [{"Alphabetic": "SMITH^JOHN"}]
    assert value(items, "0020000D", A, "00201208") == [4]
    assert run(archive, mine, Level.INSTANCE, Modality="MR", PatientID="PID-A") == []
    patients = run(archive, mine, Level.PATIENT, PatientID="PID-A")
    assert value(patients, "00100020", "PID-A", "00201204") == [4]
    theirs = full_scope(other_tenant)
    items = run(archive, theirs, Level.STUDY)
    assert uids(items, "0020000D") == [A]
    assert value(items, "0020000D", A, "00080061") == ["MR"]
    assert len(run(archive, theirs, Level.INSTANCE)) == 2


def test_cfind_style_keys_round_trip_through_pydicom(index) -> None:  # type: ignore[no-untyped-def]
    archive, tenant_id, _, _ = index
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "smi*"
    identifier.PatientID = ""
    identifier.StudyDate = "20170101-20181231"
    identifier.StudyInstanceUID = ""
    identifier.ModalitiesInStudy = ""
    identifier.NumberOfStudyRelatedInstances = ""
    identifier.SpecificCharacterSet = ""
    query = Query(Level.from_dicom(identifier.QueryRetrieveLevel), include_defaults=False)
    for element in identifier:
        if element.keyword == "QueryRetrieveLevel":
            continue
        query.add_key(int(element.tag), "" if element.value is None else str(element.value))
    with archive.database.read() as conn:
        results = list(iter_query(conn, full_scope(tenant_id), query, batch_size=1))
        assert count_rows(conn, full_scope(tenant_id), query) == 2
    datasets = [Dataset.from_json(item) for item in results]
    assert [str(ds.PatientName) for ds in datasets] == ["Smithson^Anna", "SMITH^JOHN"]
    assert [ds.StudyInstanceUID for ds in datasets] == [B, A]
    assert list(datasets[1].ModalitiesInStudy) == ["CT", "SR"]
    assert datasets[1].NumberOfStudyRelatedInstances == 4
    assert datasets[0].SpecificCharacterSet == "ISO_IR 192"
    # Exactly the requested keys (plus the UID that identifies the result).
    assert set(results[0]) == {
        "00100010", "00100020", "00080020", "0020000D", "00080061", "00201208", "00080005"
    }  # fmt: skip


def test_builder_errors_name_the_key() -> None:
    with pytest.raises(QueryError) as error:
        build_match(Level.STUDY, "StudyDate", "2020-13-01")
    assert error.value.parameter == "StudyDate"
    with pytest.raises(QueryError):
        build_match(Level.STUDY, "Modality", "CT")  # series attribute in a study search
    with pytest.raises(QueryError):
        build_match(Level.PATIENT, "StudyDate", "20200101")
    assert build_match(Level.SERIES, "00100010", "*") is None  # universal
    query = Query(Level.STUDY)
    query.add_key("PatientWeight", "70", unsupported="return")  # C-FIND may do this
    assert query.matches == [] and 0x00101030 in query.return_keys


def test_patient_level_shows_only_attributes_from_visible_studies(tmp_path, database_url):  # type: ignore[no-untyped-def]
    """Two sources upload studies under one PatientID with different names: the shared
    patient row keeps the first upload's name, which a user locked to the second source
    must neither see nor be able to match on (Patient Root C-FIND)."""
    archive = migrated_archive(tmp_path / "data", database_url)
    try:
        tenant_id = archive.default_tenant.id
        with archive.database.write() as conn:
            clinic_a = add_source(conn, tenant_id, "clinicA")
            clinic_b = add_source(conn, tenant_id, "clinicB")
        everything = full_scope(tenant_id)
        for source, name, study in (
            (clinic_a, "HIDDEN^NAME", "2.25.71"),
            (clinic_b, "SEEN^NAME", "2.25.72"),
        ):
            data = header_only_instance(
                {
                    "StudyInstanceUID": study,
                    "SeriesInstanceUID": study + ".1",
                    "PatientName": name,
                    "PatientID": "SHARED-1",
                    "Modality": "CT",
                    "InstanceNumber": 1,
                }
            )
            _ingest(archive, everything, data, source, tmp_path)
        locked = Scope(
            tenant_id=tenant_id, source_pks=frozenset({clinic_b}), permissions=frozenset({"*"})
        )

        seen = run(
            archive,
            locked,
            Level.PATIENT,
            PatientID="SHARED-1",
            PatientName="",
            NumberOfPatientRelatedStudies="",
        )
        assert len(seen) == 1
        assert seen[0]["00100010"]["Value"] == [{"Alphabetic": "SEEN^NAME"}]
        assert seen[0]["00201200"]["Value"] == [1]
        assert run(archive, locked, Level.PATIENT, PatientName="HIDDEN*") == []
        assert len(run(archive, locked, Level.PATIENT, PatientName="SEEN*")) == 1
        # Unlocked, the patient row is there (named by the first upload) with both studies.
        full = run(
            archive,
            everything,
            Level.PATIENT,
            PatientID="SHARED-1",
            NumberOfPatientRelatedStudies="",
        )
        assert full[0]["00201200"]["Value"] == [2]
    finally:
        archive.close()
