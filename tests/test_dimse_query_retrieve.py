"""C-FIND, C-MOVE and C-GET against a real `tessera serve`, driven by dcmtk's findscu,
movescu (into a storescp the test starts) and getscu; the same Scope as DICOMweb applies."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from tessera import synthetic
from tessera.client.stow import multipart_stream, request_content_type
from tessera.dicomweb import multipart_writer
from tessera.index import peers
from tessera.index.database import Database
from tessera.index.sources import add_source
from tests.conftest import (
    PG_URL,
    ServerProcess,
    create_pg_database,
    drop_pg_database,
    free_port,
    index_rows,
)
from tests.dimse_support import (
    SERVER_AET,
    dataset_bytes,
    dcmtk,
    run,
    start_dimse_server,
    wait_port,
)


class Archive:
    """The server, its peers, the data stored and a storescp acting as move destination."""

    def __init__(self, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        self.server = server
        self.port = server.dimse_port
        self.tmp = tmp_path
        self.received = tmp_path / "storescp"
        self.received.mkdir()
        self.storescp_port = free_port()
        self.storescp = subprocess.Popen(
            [
                dcmtk("storescp"),
                "-aet",
                "VIEWER",
                "-od",
                str(self.received),
                str(self.storescp_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.storescp_port)

    def stop(self) -> None:
        self.storescp.terminate()
        self.storescp.wait(10)

    def find(self, calling: str, level: str, *keys: str, patient_root: bool = False) -> list:
        out = self.tmp / f"find-{calling}-{len(list(self.tmp.iterdir()))}"
        out.mkdir()
        result = run(
            [
                dcmtk("findscu"),
                "-v",
                "-P" if patient_root else "-S",
                "-aet",
                calling,
                "-aec",
                SERVER_AET,
                "-X",
                "-od",
                str(out),
                "-k",
                f"QueryRetrieveLevel={level}",
                *[arg for key in keys for arg in ("-k", key)],
                "127.0.0.1",
                str(self.port),
            ]
        )
        self.last_output = result.stdout + result.stderr
        return [pydicom.dcmread(path) for path in sorted(out.iterdir())]

    def move(self, calling: str, destination: str, *keys: str) -> str:
        result = run(
            [
                dcmtk("movescu"),
                "-v",
                "-S",
                "-aet",
                calling,
                "-aec",
                SERVER_AET,
                "-aem",
                destination,
                *[arg for key in keys for arg in ("-k", key)],
                "127.0.0.1",
                str(self.port),
            ]
        )
        return result.stdout + result.stderr

    def get(self, calling: str, folder: Path, *keys: str) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        result = run(
            [
                dcmtk("getscu"),
                "-v",
                "-S",
                "-aet",
                calling,
                "-aec",
                SERVER_AET,
                "-od",
                str(folder),
                *[arg for key in keys for arg in ("-k", key)],
                "127.0.0.1",
                str(self.port),
            ]
        )
        return result.stdout + result.stderr


def _write(folder: Path, files: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(files):
        path = folder / f"{index}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        # C-GET / C-MOVE reading from a real S3-compatible object store (SeaweedFS).
        pytest.param("postgresql-s3", marks=pytest.mark.postgres),
        # Every instance sent from a file (as stored, or converted frame by frame into a
        # spool file), as big instances are: convert_in_memory_max_bytes 0.
        "sqlite-from-file",
        pytest.param("postgresql-s3-from-file", marks=pytest.mark.postgres),
    ],
)
def shared_archive(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One populated archive per database kind for the whole module (setting one up costs
    a server start, two peers' worth of CLI calls and two uploads)."""
    tmp_path = tmp_path_factory.mktemp("dimse_qr")
    if request.param.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    else:
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        database_url = create_pg_database()
    made: list = []

    store_env = request.getfixturevalue("seaweedfs").env() if "-s3" in request.param else {}
    if request.param.endswith("-from-file"):
        store_env["TESSERA_CONVERT_IN_MEMORY_MAX_BYTES"] = "0"

    def server_factory(**kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("data_dir", tmp_path / "data")
        kwargs.setdefault("database_url", database_url)
        kwargs["env_extra"] = {**store_env, **kwargs.get("env_extra", {})}
        server = ServerProcess(**kwargs)
        made.append(server)
        return server

    try:
        yield from _populated(server_factory, tmp_path)
    finally:
        for server in made:
            server.stop()
        if request.param.startswith("postgresql"):
            drop_pg_database(database_url)


@pytest.fixture
def archive(shared_archive):  # type: ignore[no-untyped-def]
    for path in shared_archive.received.iterdir():
        path.unlink()
    return shared_archive


def _populated(server_factory, tmp_path):  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory)
    archive = Archive(server, tmp_path)
    # In-process registry calls (the `tessera peers` command is tested in test_dimse_store.py).
    database = Database(server.database_url)
    with database.write() as conn:
        add_source(conn, 1, "ClinicA")
        add_source(conn, 1, "ClinicB")
        # The modality stores as ClinicA; VIEWER (all sources) and LIMITED (ClinicA) query.
        peers.add_peer(conn, 1, "MODALITY", "127.0.0.1", 0, upload_source="ClinicA")
        peers.add_peer(conn, 1, "VIEWER", "127.0.0.1", archive.storescp_port)
        peers.add_peer(
            conn, 1, "LIMITED", "127.0.0.1", 0, query_sources=["ClinicA"], may_store=False
        )
    database.dispose()

    # Study A over DIMSE (ClinicA): two CT slices and an RLE-compressed MR slice.
    study_a = synthetic.StudySpec(
        patient_name="SMITH^JOHN",
        patient_id="PAT-A",
        study_date="20240115",
        accession_number="ACC-A",
        study_description="Head CT",
    )
    ct_series, mr_series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    a_files = _write(
        tmp_path / "study_a",
        [
            synthetic.ct_image(study_a, ct_series, 1, rows=64, columns=64),
            synthetic.ct_image(study_a, ct_series, 2, rows=64, columns=64),
            synthetic.mr_rle_image(study_a, mr_series, 1, size=64),
        ],
    )
    result = run(
        [
            dcmtk("storescu"),
            "-R",
            "-xr",
            "-aet",
            "MODALITY",
            "-aec",
            SERVER_AET,
            "127.0.0.1",
            str(archive.port),
            *map(str, a_files),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr

    # Study B over STOW-RS (ClinicB).
    study_b = synthetic.StudySpec(
        patient_name="JONES^MARY",
        patient_id="PAT-B",
        study_date="20230610",
        accession_number="ACC-B",
        study_description="Chest CT",
    )
    b_files = _write(
        tmp_path / "study_b",
        [synthetic.ct_image(study_b, pydicom.uid.generate_uid(), 1, rows=64, columns=64)],
    )
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies?source=ClinicB",
        content=b"".join(multipart_stream(b_files, boundary)),
        headers={"Content-Type": request_content_type(boundary)},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    archive.study_a, archive.study_b = study_a.study_instance_uid, study_b.study_instance_uid
    archive.a_files, archive.b_files = a_files, b_files
    archive.mr_series = mr_series
    yield archive
    archive.stop()


def test_find_at_every_level(archive) -> None:  # type: ignore[no-untyped-def]
    studies = archive.find(
        "VIEWER",
        "STUDY",
        "PatientName=*",
        "StudyInstanceUID",
        "StudyDate",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    )
    by_uid = {str(ds.StudyInstanceUID): ds for ds in studies}
    assert set(by_uid) == {archive.study_a, archive.study_b}
    a = by_uid[archive.study_a]
    assert str(a.PatientName) == "SMITH^JOHN" and a.StudyDate == "20240115"
    assert set(a.ModalitiesInStudy) == {"CT", "MR"} and int(a.NumberOfStudyRelatedInstances) == 3

    # Wildcards, ranges, lists, and a STOW-RS study found over C-FIND.
    assert [
        str(d.StudyInstanceUID)
        for d in archive.find("VIEWER", "STUDY", "PatientName=JON*", "StudyInstanceUID")
    ] == [archive.study_b]
    assert [
        str(d.StudyInstanceUID)
        for d in archive.find("VIEWER", "STUDY", "StudyDate=20240101-20241231", "StudyInstanceUID")
    ] == [archive.study_a]
    assert [
        str(d.StudyInstanceUID)
        for d in archive.find("VIEWER", "STUDY", "StudyDate=-20231231", "StudyInstanceUID")
    ] == [archive.study_b]
    assert (
        len(
            archive.find(
                "VIEWER", "STUDY", f"StudyInstanceUID={archive.study_a}\\{archive.study_b}"
            )
        )
        == 2
    )
    assert archive.find("VIEWER", "STUDY", "PatientName=NOBODY*", "StudyInstanceUID") == []

    patients = archive.find("VIEWER", "PATIENT", "PatientID", "PatientName", patient_root=True)
    assert {str(p.PatientID) for p in patients} == {"PAT-A", "PAT-B"}

    series = archive.find(
        "VIEWER", "SERIES", f"StudyInstanceUID={archive.study_a}", "SeriesInstanceUID", "Modality"
    )
    assert sorted(str(s.Modality) for s in series) == ["CT", "MR"]
    assert all(str(s.StudyInstanceUID) == archive.study_a for s in series)

    images = archive.find(
        "VIEWER",
        "IMAGE",
        f"StudyInstanceUID={archive.study_a}",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "InstanceNumber",
    )
    assert len(images) == 3 and all(s.SOPInstanceUID for s in images)


def test_find_respects_the_peer_sources(archive) -> None:  # type: ignore[no-untyped-def]
    limited = archive.find("LIMITED", "STUDY", "StudyInstanceUID")
    assert [str(d.StudyInstanceUID) for d in limited] == [archive.study_a]
    assert (
        archive.find("LIMITED", "IMAGE", f"StudyInstanceUID={archive.study_b}", "SOPInstanceUID")
        == []
    )


def test_find_bad_identifier_is_a_failure_status(archive) -> None:  # type: ignore[no-untyped-def]
    assert archive.find("VIEWER", "STUDY", "StudyDate=notadate", "StudyInstanceUID") == []
    assert (
        "DataSetDoesNotMatchSOPClass" in archive.last_output
        or "0xa900" in archive.last_output.lower()
    )
    assert archive.find("VIEWER", "NOSUCHLEVEL", "StudyInstanceUID") == []
    assert "0xa900" in archive.last_output.lower() or "DataSetDoesNotMatch" in archive.last_output
    # Study Root has no PATIENT level.
    assert archive.find("VIEWER", "PATIENT", "PatientID") == []
    assert archive.server.alive()


def _received(folder: Path) -> dict[str, Path]:
    return {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in folder.iterdir()
    }


def test_move_sends_every_instance_byte_identical(archive) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tessera.storage.transcode")  # the RLE slice needs transcoding
    output = archive.move(
        "VIEWER", "VIEWER", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={archive.study_a}"
    )
    assert "Received Final Move Response (Success)" in output, output
    received = _received(archive.received)
    assert len(received) == 3
    rows = index_rows(
        archive.server.database_url,
        "SELECT sop_instance_uid, blob_key, transfer_syntax_uid FROM instance",
    )
    stored = {row.sop_instance_uid: row for row in rows}
    for uid, path in received.items():
        # The stored file, from the archive's blob store (a folder or a bucket).
        blob = archive.received.parent / f"stored-{uid}.dcm"
        blob.write_bytes(archive.server.read_blob(stored[uid].blob_key))
        if stored[uid].transfer_syntax_uid == "1.2.840.10008.1.2.5":
            # storescp accepts uncompressed syntaxes only: transcoded, same pixels.
            got = pydicom.dcmread(path)
            assert got.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
            assert np.array_equal(got.pixel_array, pydicom.dcmread(blob).pixel_array)
        else:
            assert dataset_bytes(path) == dataset_bytes(blob)


def test_move_series_and_image_levels_and_counts(archive) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tessera.storage.transcode")  # the RLE slice needs transcoding
    output = archive.move(
        "VIEWER",
        "VIEWER",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={archive.study_a}",
        f"SeriesInstanceUID={archive.mr_series}",
    )
    assert "Received Final Move Response (Success)" in output, output
    assert len(list(archive.received.iterdir())) == 1


def test_move_refusals(archive) -> None:  # type: ignore[no-untyped-def]
    unknown = archive.move(
        "VIEWER", "NOWHERE", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={archive.study_a}"
    )
    assert "MoveDestinationUnknown" in unknown
    # A peer without a port is no destination either.
    assert "MoveDestinationUnknown" in archive.move(
        "VIEWER", "MODALITY", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={archive.study_a}"
    )
    missing_key = archive.move("VIEWER", "VIEWER", "QueryRetrieveLevel=STUDY")
    assert "DataSetDoesNotMatchSOPClass" in missing_key or "a900" in missing_key.lower()
    # LIMITED sees only ClinicA: study B does not exist for it.
    hidden = archive.move(
        "LIMITED", "VIEWER", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={archive.study_b}"
    )
    assert "Received Final Move Response (Success)" in hidden
    assert list(archive.received.iterdir()) == []
    assert archive.server.alive()


def test_get_with_role_selection_and_scope(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    output = archive.get(
        "VIEWER",
        tmp_path / "get_b",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={archive.study_b}",
    )
    assert "Received C-GET Response (Success)" in output or "Final status" in output, output
    received = list((tmp_path / "get_b").iterdir())
    assert len(received) == 1
    original = pydicom.dcmread(archive.b_files[0])
    got = pydicom.dcmread(received[0])
    # getscu re-encodes what it writes (sequence lengths); the decoded data set is the same.
    assert got == original or got.PixelData == original.PixelData
    hidden = archive.get(
        "LIMITED",
        tmp_path / "get_hidden",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={archive.study_b}",
    )
    assert list((tmp_path / "get_hidden").iterdir()) == [], hidden


def test_dimse_stored_study_is_found_over_qido(archive) -> None:  # type: ignore[no-untyped-def]
    response = httpx.get(
        f"{archive.server.dicomweb}/studies",
        params={"StudyInstanceUID": archive.study_a},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()[0]["0020000D"]["Value"] == [archive.study_a]


def test_move_image_level_reports_counts(archive) -> None:  # type: ignore[no-untyped-def]
    rows = index_rows(
        archive.server.database_url,
        "SELECT sop_instance_uid FROM instance WHERE transfer_syntax_uid = :ts",
        ts="1.2.840.10008.1.2.1",
    )
    uids = sorted(row.sop_instance_uid for row in rows)[:2]
    output = archive.move(
        "VIEWER", "VIEWER", "QueryRetrieveLevel=IMAGE", "SOPInstanceUID=" + "\\".join(uids)
    )
    assert "Received Final Move Response (Success)" in output, output
    assert "Received Move Response 2 (Pending)" in output
    assert set(_received(archive.received)) == set(uids)


def test_move_lists_the_instances_the_destination_refused(archive) -> None:  # type: ignore[no-untyped-def]
    """A destination that takes CT only: the MR slice fails, its UID is in the Failed SOP
    Instance UID List of the final (warning) response, the counts add up."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelMove

    picky_port = free_port()
    picky = AE(ae_title="PICKY")
    picky.add_supported_context(CTImageStorage)
    server = picky.start_server(
        ("127.0.0.1", picky_port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)]
    )
    database = Database(archive.server.database_url)
    with database.write() as conn:
        peers.add_peer(conn, 1, "PICKY", "127.0.0.1", picky_port)
    database.dispose()
    try:
        scu = AE(ae_title="VIEWER")
        scu.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = scu.associate("127.0.0.1", archive.port, ae_title=SERVER_AET)
        assert assoc.is_established
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = archive.study_a
        responses = list(
            assoc.send_c_move(identifier, "PICKY", StudyRootQueryRetrieveInformationModelMove)
        )
        assoc.release()
    finally:
        server.shutdown()
    final_status, final_identifier = responses[-1]
    assert final_status.Status == 0xB000
    assert final_status.NumberOfCompletedSuboperations == 2
    assert final_status.NumberOfFailedSuboperations == 1
    mr_uid = index_rows(
        archive.server.database_url,
        "SELECT sop_instance_uid FROM instance WHERE sop_class_uid = :mr",
        mr="1.2.840.10008.5.1.4.1.1.4",
    )[0].sop_instance_uid
    assert list(final_identifier.FailedSOPInstanceUIDList) == [mr_uid] or (
        final_identifier.FailedSOPInstanceUIDList == mr_uid
    )


def _audit_rows(archive, principal: str) -> list:  # type: ignore[no-untyped-def]
    return index_rows(
        archive.server.database_url,
        "SELECT action, outcome, target, detail FROM audit_event WHERE principal = :p",
        p=principal,
    )


def _wait_for_audit(archive, principal: str, done) -> list:  # type: ignore[no-untyped-def]
    """The audit writer flushes in batches (every 0.5 s): wait until `done(rows)`."""
    deadline = time.time() + 15
    rows: list = []
    while time.time() < deadline:
        rows = _audit_rows(archive, principal)
        if done(rows):
            return rows
        time.sleep(0.2)
    return rows


def test_dimse_operations_are_audited(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The modality's C-STOREs of study A: one entry for the study, not one per instance.
    stored = _wait_for_audit(archive, "ae:MODALITY", lambda rows: bool(rows))
    assert [(r.action, r.outcome, r.target) for r in stored if r.action == "upload"] == [
        ("upload", "ok", archive.study_a)
    ]

    archive.find("VIEWER", "STUDY", "PatientID=PAT-A", "StudyInstanceUID")
    archive.get(
        "VIEWER",
        tmp_path / "audited_get",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={archive.study_b}",
    )
    rows = _wait_for_audit(
        archive,
        "ae:VIEWER",
        lambda rows: (
            any(r.action == "query" and "PAT-A" in r.detail for r in rows)
            and any(r.action == "retrieve" and r.target == archive.study_b for r in rows)
        ),
    )
    assert any(r.action == "query" and r.outcome == "ok" and "PAT-A" in r.detail for r in rows)
    assert any(r.action == "retrieve" and r.target == archive.study_b for r in rows), rows

    # An unregistered AE is refused at association time, and that is recorded.
    archive.get(
        "NOBODY",
        tmp_path / "audited_refused",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={archive.study_b}",
    )
    refused = _wait_for_audit(archive, "ae:NOBODY", lambda rows: bool(rows))
    assert ("associate", "denied") in {(r.action, r.outcome) for r in refused}
