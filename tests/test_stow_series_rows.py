"""Group commit with multi-row statements (services/ingest._record_group): the new instances
of one series in a group are added together after the first, and every instance still gets
its own verdict, counters, change feed entries and QIDO answers (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import io

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tessera.index import changes
from tessera.scope import full_scope
from tessera.services import ingest
from tessera.synthetic import StudySpec, ct_image, mr_rle_image
from tests.conftest import ServerProcess, index_rows, migrated_archive
from tests.events_support import read_whole_feed, stow_parts
from tests.test_stow import stow

FAILURE_REASON = "00081197"
REFERENCED = "00081199"
FAILED = "00081198"


def instance(
    study: StudySpec, series: str, uid: str, number: int, mr: bool = False, **changes: object
) -> bytes:
    """A small CT (or RLE MR) slice with the SOP Instance UID `uid` and attributes changed."""
    data = (
        mr_rle_image(study, series, number, 16) if mr else ct_image(study, series, number, 16, 16)
    )
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.SOPInstanceUID = uid
    dataset.file_meta.MediaStorageSOPInstanceUID = uid
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def uid_of(part: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True).SOPInstanceUID)


def tag(item: dict, key: str) -> object:
    return item[key]["Value"][0]


def test_one_request_of_a_series_keeps_every_verdict_count_and_change(
    server: ServerProcess,
) -> None:
    """Groups of 5 parts: stored ones (resends), a different object under a stored UID
    (0x0111), the same instance twice in a group, an instance of another modality, a second
    series; the others are added several at a time. (No instance is repeated across groups:
    the groups of a request are recorded side by side, in any order, and which of them
    stores it would vary.)"""
    base = generate_uid(prefix=None)  # 2.25.<40 digits>: room for suffixes
    study = StudySpec(patient_name="ROWS^TEST", patient_id="ROWS-1", study_instance_uid=base)
    ct_series, mr_series = f"{base}.1", f"{base}.2"  # CT sorts before MR in a group
    ct = {n: instance(study, ct_series, f"{base}.1.{100 + n}", n) for n in range(1, 13)}
    ct[7] = instance(study, ct_series, f"{base}.1.107", 7, Modality="OT")
    mr = instance(study, mr_series, f"{base}.2.101", 1, mr=True)
    changed = instance(study, ct_series, f"{base}.1.102", 2, StudyDescription="changed")

    stow_parts(server.dicomweb, [ct[1], ct[2]])
    parts = [
        *(ct[3], ct[1], ct[4], changed, ct[5]),  # a resend and a conflict among new ones
        *(ct[6], ct[7], ct[8], ct[2], mr),  # OT in the CT series; a resend
        *(ct[9], ct[10], ct[10], ct[11], ct[12]),  # the same instance twice in one group
    ]
    response = stow(server, parts)
    assert response.status_code == 202, response.text
    body = response.json()
    stored = [tag(item, "00081155") for item in body[REFERENCED]["Value"]]
    assert stored == [uid_of(p) for p in parts if p is not changed]  # in part order
    [refused] = body[FAILED]["Value"]
    assert tag(refused, "00081155") == f"{base}.1.102"
    assert tag(refused, FAILURE_REASON) == 0x0111

    # Rows: one per instance, each with its metadata and its file; the first copy of .002.
    rows = index_rows(
        server.database_url,
        "SELECT i.sop_instance_uid, i.sha256, i.instance_number, i.blob_key, m.dicom_json "
        "FROM instance i JOIN instance_metadata m ON m.instance_pk = i.id "
        "ORDER BY i.sop_instance_uid",
    )
    expected = {**{uid_of(p): p for p in ct.values()}, uid_of(mr): mr}
    assert [r[0] for r in rows] == sorted(expected)
    for uid, sha, number, blob_key, dicom_json in rows:
        assert sha == hashlib.sha256(expected[uid]).hexdigest()
        assert server.read_blob(blob_key) == expected[uid]
        assert number == int(uid.rsplit(".", 1)[1]) - 100
        assert uid in bytes(dicom_json).decode()
    [study_row] = index_rows(
        server.database_url,
        "SELECT number_of_study_related_series, number_of_study_related_instances, "
        "modalities_in_study, sop_classes_in_study FROM study",
    )
    assert tuple(study_row) == (
        2,
        13,
        "CT\\MR\\OT",
        "1.2.840.10008.5.1.4.1.1.2\\1.2.840.10008.5.1.4.1.1.4",
    )
    series_rows = index_rows(
        server.database_url,
        "SELECT series_instance_uid, modality, number_of_series_related_instances FROM series "
        "ORDER BY series_instance_uid",
    )
    assert [tuple(r) for r in series_rows] == [(ct_series, "CT", 12), (mr_series, "MR", 1)]
    sources = index_rows(
        server.database_url,
        "SELECT (SELECT count(*) FROM study_source), (SELECT count(*) FROM series_source), "
        "(SELECT count(*) FROM study_completion)",
    )
    assert tuple(sources[0]) == (1, 2, 1)

    # The change feed: one instance.stored per new instance, none for a resend or a
    # refusal. A group's entries are consecutive, in the order its rows were recorded (by
    # SOP Instance UID); the groups of one request may commit in any order.
    feed = read_whole_feed(server)
    assert [c["seq"] for c in feed] == list(range(1, len(feed) + 1))
    assert {c["study_instance_uid"] for c in feed} == {base}
    got = [
        (c["type"], c.get("series_instance_uid"), c.get("sop_instance_uid"), c.get("detail"))
        for c in feed
    ]
    ct_class, mr_class = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"

    def stored_entry(n: int, modality: str = "CT") -> tuple:
        detail = {"sop_class_uid": ct_class, "modality": modality}
        return (changes.INSTANCE_STORED, ct_series, f"{base}.1.{100 + n}", detail)

    mr_entry = (
        changes.INSTANCE_STORED,
        mr_series,
        f"{base}.2.101",
        {"sop_class_uid": mr_class, "modality": "MR"},
    )
    assert got[:3] == [
        (changes.STUDY_FIRST_INSTANCE, None, None, {"modality": "CT"}),
        stored_entry(1),
        stored_entry(2),
    ]
    groups = [
        [stored_entry(3), stored_entry(4), stored_entry(5)],
        [stored_entry(6), stored_entry(7, "OT"), stored_entry(8), mr_entry],
        [stored_entry(9), stored_entry(10), stored_entry(11), stored_entry(12)],
    ]
    assert len(got) == 3 + sum(len(g) for g in groups)
    for entries in groups:
        at = got.index(entries[0])
        assert got[at : at + len(entries)] == entries

    # QIDO-RS answers from those rows.
    qido = f"{server.dicomweb}/studies"
    studies = httpx.get(
        qido, params={"StudyInstanceUID": base, "includefield": "all"}, timeout=30
    ).json()
    assert [tag(s, "00201208") for s in studies] == [13]  # NumberOfStudyRelatedInstances
    assert [tag(s, "00201206") for s in studies] == [2]  # NumberOfStudyRelatedSeries
    assert studies[0]["00080061"]["Value"] == ["CT", "MR", "OT"]  # ModalitiesInStudy
    assert studies[0]["00080062"]["Value"] == [ct_class, mr_class]  # SOPClassesInStudy
    series = httpx.get(f"{qido}/{base}/series", timeout=30).json()
    assert sorted((tag(s, "0020000E"), tag(s, "00201209")) for s in series) == [
        (ct_series, 12),
        (mr_series, 1),
    ]
    instances = httpx.get(f"{qido}/{base}/instances", timeout=30).json()
    assert sorted(tag(i, "00080018") for i in instances) == sorted(expected)
    metadata = httpx.get(
        f"{qido}/{base}/series/{ct_series}/instances/{base}.1.111/metadata", timeout=30
    )
    assert metadata.status_code == 200
    assert tag(metadata.json()[0], "00200013") == 11  # InstanceNumber


@pytest.fixture
def archive(tmp_path, database_url):  # type: ignore[no-untyped-def]
    archive = migrated_archive(tmp_path / "data", database_url)
    yield archive
    archive.close()


def spooled(archive, parts: list[bytes]) -> list:  # type: ignore[no-untyped-def]
    archive.spool_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for number, data in enumerate(parts):
        path = archive.spool_dir / f"part-{number}-{generate_uid()}.dcm"
        path.write_bytes(data)
        files.append((path, hashlib.sha256(data).hexdigest()))
    return files


def test_group_adds_new_instances_of_a_series_together(archive, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The bulk path is the one taken: the series' first new instance alone, the others in
    one call; a stored one and a repeat on their own."""
    scope = full_scope(archive.default_tenant.id)
    source_pk = ingest.resolve_upload_source(archive, scope, None)
    base = generate_uid(prefix=None)  # 2.25.<40 digits>: room for suffixes
    study = StudySpec(study_instance_uid=base)
    parts = [instance(study, f"{base}.1", f"{base}.1.{n}", n) for n in range(1, 6)]
    assert [
        o.stored
        for o in ingest.ingest_files(archive, scope, spooled(archive, parts[:1]), source_pk)
    ] == [True]
    together: list[list[str]] = []
    real = ingest.record_more_instances

    def spy(conn, records):  # type: ignore[no-untyped-def]
        together.append([r.sop_instance_uid for r in records])
        return real(conn, records)

    monkeypatch.setattr(ingest, "record_more_instances", spy)
    group = [parts[4], parts[0], parts[2], parts[1], parts[2], parts[3]]
    outcomes = ingest.ingest_files(archive, scope, spooled(archive, group), source_pk)
    assert [(o.stored, o.already_stored) for o in outcomes] == [
        (True, False),
        (True, True),
        (True, False),
        (True, False),
        (True, True),
        (True, False),
    ]
    # .1 is stored: .2 first alone, then .3, .4 and .5 together, then the copy of .3.
    assert together == [[f"{base}.1.3", f"{base}.1.4", f"{base}.1.5"]]


def test_a_uid_stored_meanwhile_falls_back_to_one_by_one(archive, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A concurrent upload stores a UID between the group's look-up and its multi-row INSERT
    (here: the look-up misses it): the bulk savepoint is rolled back and each instance gets
    its own verdict, rows, counts and change feed entry, once."""
    scope = full_scope(archive.default_tenant.id)
    source_pk = ingest.resolve_upload_source(archive, scope, None)
    base = generate_uid(prefix=None)  # 2.25.<40 digits>: room for suffixes
    study = StudySpec(study_instance_uid=base)
    parts = [instance(study, f"{base}.1", f"{base}.1.{n}", n) for n in range(1, 6)]
    first = ingest.ingest_files(archive, scope, spooled(archive, [parts[1], parts[3]]), source_pk)
    assert [o.stored for o in first] == [True, True]
    monkeypatch.setattr(ingest, "stored_sop_instance_uids", lambda conn, tenant, uids: set())
    failed: list[str] = []
    real = ingest.record_more_instances

    def spy(conn, records):  # type: ignore[no-untyped-def]
        try:
            return real(conn, records)
        except Exception as exc:
            failed.append(type(exc).__name__)
            raise

    monkeypatch.setattr(ingest, "record_more_instances", spy)
    outcomes = ingest.ingest_files(archive, scope, spooled(archive, parts), source_pk)
    assert failed == ["IntegrityError"]  # .1 first alone, then .2 to .5 tried together
    assert [(o.stored, o.already_stored) for o in outcomes] == [
        (True, False),
        (True, True),
        (True, False),
        (True, True),
        (True, False),
    ]
    with archive.database.read() as conn:
        counts = conn.exec_driver_sql(
            "SELECT number_of_study_related_series, number_of_study_related_instances FROM study"
        ).one()
        per_series = conn.exec_driver_sql(
            "SELECT number_of_series_related_instances FROM series"
        ).scalar_one()
        stored = conn.exec_driver_sql(
            "SELECT count(*) FROM instance i JOIN instance_metadata m ON m.instance_pk = i.id"
        ).scalar_one()
        feed = conn.exec_driver_sql(
            "SELECT seq, kind, sop_instance_uid FROM change_event ORDER BY seq"
        ).all()
    assert tuple(counts) == (1, 5) and per_series == 5 and stored == 5
    assert [tuple(row) for row in feed] == [
        (1, changes.STUDY_FIRST_INSTANCE, None),
        (2, changes.INSTANCE_STORED, f"{base}.1.2"),
        (3, changes.INSTANCE_STORED, f"{base}.1.4"),
        (4, changes.INSTANCE_STORED, f"{base}.1.1"),
        (5, changes.INSTANCE_STORED, f"{base}.1.3"),
        (6, changes.INSTANCE_STORED, f"{base}.1.5"),
    ]
