"""Upload sessions ("upload later") against a real server on SQLite and PostgreSQL: what a
session holds is durable but invisible until commit; commit is all or nothing; discard and
expiry remove it (its files swept); closed sessions refuse more work with the reason."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type as content_type
from tessera.dicomweb.multipart_writer import new_boundary
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import PG_URL, ServerProcess, create_pg_database, drop_pg_database
from tests.document_files import multipart_body

REFERENCED = "00081199"
FAILED = "00081198"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("sessions")
    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{tmp / 'index.sqlite3'}", None
    else:
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        url = cleanup = create_pg_database()
    process = ServerProcess(
        data_dir=tmp / "data",
        database_url=url,
        env_extra={"TESSERA_WORKERS": "1", "TESSERA_MAX_SESSION_BYTES": "200000"},
    ).start(timeout=120)
    try:
        yield process
    finally:
        process.stop()
        if cleanup:
            drop_pg_database(cleanup)


def api(server: ServerProcess) -> str:
    return f"{server.base_url}/api/v1/upload-sessions"


def open_session(server: ServerProcess, **body) -> str:  # type: ignore[no-untyped-def]
    response = httpx.post(api(server), json=body, timeout=30)
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "open"
    return response.json()["id"]


def stow(server: ServerProcess, parts: list[bytes], session: str | None = None) -> httpx.Response:
    boundary = new_boundary()
    url = (
        f"{server.dicomweb}/upload-sessions/{session}/studies"
        if session
        else f"{server.dicomweb}/studies"
    )
    return httpx.post(
        url,
        content=multipart_body(parts, boundary),
        headers={"Content-Type": content_type(boundary)},
        timeout=60,
    )


def study_parts(count: int = 3, **spec) -> tuple[StudySpec, list[bytes]]:  # type: ignore[no-untyped-def]
    study = StudySpec(**spec)
    series = generate_uid()
    return study, [ct_image(study, series, n, 16, 16) for n in range(1, count + 1)]


def visible(server: ServerProcess, study: StudySpec) -> dict[str, int]:
    """What every read path shows of the study."""
    uid = study.study_instance_uid
    root = server.dicomweb
    return {
        "qido_studies": len(httpx.get(f"{root}/studies", params={"StudyInstanceUID": uid}).json()),
        "qido_instances": len(
            httpx.get(f"{root}/instances", params={"StudyInstanceUID": uid}).json()
        ),
        "metadata": httpx.get(f"{root}/studies/{uid}/metadata").status_code,
        "wado": httpx.get(
            f"{root}/studies/{uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"'},
        ).status_code,
    }


HIDDEN = {"qido_studies": 0, "qido_instances": 0, "metadata": 404, "wado": 404}


def sweep(server: ServerProcess) -> str:
    env = dict(os.environ)
    env.update(TESSERA_DATABASE_URL=server.database_url, TESSERA_DATA_DIR=str(server.data_dir))
    done = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "sweep", "--grace-seconds", "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def blob_files(server: ServerProcess) -> set[str]:
    root = Path(server.data_dir) / "blobs"
    return {p.name for p in root.rglob("*.dcm") if ".spool" not in p.parts}


def test_session_holds_instances_invisibly_until_commit(server: ServerProcess) -> None:
    session = open_session(server, description="clinic upload")
    study, parts = study_parts(3)
    stored = stow(server, parts, session)
    assert stored.status_code == 200, stored.text
    assert len(stored.json()[REFERENCED]["Value"]) == 3
    assert visible(server, study) == HIDDEN  # not even to the uploader
    assert stow(server, parts, session).status_code == 200  # resending is a no-op

    view = httpx.get(f"{api(server)}/{session}").json()
    assert view["instances"] == 3 and view["size_bytes"] == sum(len(p) for p in parts)
    assert view["studies"][0]["StudyInstanceUID"] == study.study_instance_uid
    assert view["studies"][0]["series"][0]["instances"] == 3
    assert view["patients"] == [{"PatientID": "PAT-1", "PatientName": "DOE^JANE", "studies": 1}]
    assert view["problems"] == []
    assert session in {s["id"] for s in httpx.get(api(server)).json()}

    committed = httpx.post(f"{api(server)}/{session}/commit", timeout=60)
    assert committed.status_code == 200, committed.text
    assert committed.json()["instances"] == 3
    assert committed.json()["studies"] == [study.study_instance_uid]
    shown = visible(server, study)
    assert shown == {"qido_studies": 1, "qido_instances": 3, "metadata": 200, "wado": 200}
    assert httpx.get(f"{api(server)}/{session}").json()["state"] == "committed"
    # A closed session refuses more work, saying why.
    again = httpx.post(f"{api(server)}/{session}/commit")
    assert again.status_code == 409 and "committed" in again.json()["detail"]
    more = stow(server, parts[:1], session)
    assert more.status_code == 409 and "committed" in more.json()["detail"]
    assert httpx.post(f"{api(server)}/{session}/discard").status_code == 409


def test_problems_are_listed(server: ServerProcess) -> None:
    session = open_session(server)
    study = StudySpec(patient_id="P-A")
    other_patient = StudySpec(patient_id="P-B", study_instance_uid=study.study_instance_uid)
    parts = [
        ct_image(study, generate_uid(), 1, 16, 16),
        ct_image(other_patient, generate_uid(), 1, 16, 16),
    ]
    assert stow(server, parts, session).status_code == 200
    problems = httpx.get(f"{api(server)}/{session}").json()["problems"]
    assert problems == [f"study {study.study_instance_uid} holds 2 patient IDs: P-A, P-B"]
    httpx.post(f"{api(server)}/{session}/discard")


def test_session_never_blocks_an_upload_of_the_same_uids(server: ServerProcess) -> None:
    session = open_session(server)
    study, parts = study_parts(2)
    assert stow(server, parts, session).status_code == 200
    # The same objects straight into the archive: stored at once.
    assert stow(server, parts).status_code == 200
    assert visible(server, study)["qido_instances"] == 2
    committed = httpx.post(f"{api(server)}/{session}/commit")
    assert committed.status_code == 200
    assert committed.json()["already_stored"] == 2
    assert visible(server, study)["qido_instances"] == 2


def test_commit_is_all_or_nothing(server: ServerProcess) -> None:
    session = open_session(server)
    study, parts = study_parts(3)
    assert stow(server, parts, session).status_code == 200
    # Meanwhile a different object is stored under the second instance's SOP Instance UID.
    dataset = pydicom.dcmread(io.BytesIO(parts[1]))
    dataset.SeriesDescription = "a different object"
    changed = io.BytesIO()
    dataset.save_as(changed, enforce_file_format=True)
    assert stow(server, [changed.getvalue()]).status_code == 200
    refused = httpx.post(f"{api(server)}/{session}/commit", timeout=60)
    assert refused.status_code == 409, refused.text
    [instance] = refused.json()["instances"]
    assert instance["SOPInstanceUID"] == dataset.SOPInstanceUID
    assert instance["FailureReason"] == 0x0111
    assert visible(server, study)["qido_instances"] == 1  # none of the session's three
    assert httpx.get(f"{api(server)}/{session}").json()["state"] == "open"


def test_discard_removes_everything_and_the_sweeper_takes_the_files(server: ServerProcess) -> None:
    before = blob_files(server)
    session = open_session(server)
    study, parts = study_parts(2, patient_id="DISCARD-1")
    assert stow(server, parts, session).status_code == 200
    added = blob_files(server) - before
    assert len(added) == 2
    sweep(server)  # open sessions' files are kept
    assert added <= blob_files(server)
    discarded = httpx.post(f"{api(server)}/{session}/discard")
    assert discarded.status_code == 200 and discarded.json()["instances"] == 2
    view = httpx.get(f"{api(server)}/{session}").json()
    assert view["state"] == "discarded" and view["instances"] == 0
    refused = httpx.post(f"{api(server)}/{session}/commit")
    assert refused.status_code == 409 and "discarded" in refused.json()["detail"]
    sweep(server)
    assert not (added & blob_files(server))
    assert visible(server, study) == HIDDEN


def test_expired_session_cannot_be_used_and_is_swept(server: ServerProcess) -> None:
    session = open_session(server, expires_in_seconds=2)
    study, parts = study_parts(1, patient_id="EXPIRE-1")
    before = blob_files(server)
    assert stow(server, parts, session).status_code == 200
    added = blob_files(server) - before
    time.sleep(2.5)
    refused = httpx.post(f"{api(server)}/{session}/commit")
    assert refused.status_code == 409 and "expired" in refused.json()["detail"]
    assert stow(server, parts, session).status_code == 409
    sweep(server)
    assert httpx.get(f"{api(server)}/{session}").json()["state"] == "expired"
    assert not (added & blob_files(server))
    assert visible(server, study) == HIDDEN


def test_session_size_limit(server: ServerProcess) -> None:
    session = open_session(server)
    _, parts = study_parts(1)
    big = ct_image(StudySpec(), generate_uid(), 1, 256, 256)  # 128 KiB of pixels
    assert stow(server, [big], session).status_code == 200
    response = stow(server, [ct_image(StudySpec(), generate_uid(), 1, 256, 256)], session)
    [item] = response.json()[FAILED]["Value"]
    assert item["00081197"]["Value"] == [0xA700]
    assert "limit" in item["00000902"]["Value"][0]
    assert httpx.get(f"{api(server)}/{session}").json()["instances"] == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"source": "nowhere"}, "unknown source"),
        ({"expires_in_seconds": 0}, "expires_in_seconds"),
        ({"expires_in_seconds": "soon"}, "integer"),
        ({"description": 5}, "string"),
        ({"description": "x" * 1025}, "longer"),
    ],
)
def test_bad_session_requests(server: ServerProcess, body: dict, says: str) -> None:
    response = httpx.post(api(server), json=body)
    assert response.status_code == 400 and says in response.json()["detail"]


def test_unknown_session_is_404(server: ServerProcess) -> None:
    for method, path in (
        ("GET", ""),
        ("PATCH", ""),
        ("POST", "/commit"),
        ("POST", "/discard"),
        ("DELETE", ""),
    ):
        response = httpx.request(
            method, f"{api(server)}/0123456789abcdef{path}", json={"description": "x"}
        )
        assert response.status_code == 404, (method, path, response.text)
    assert stow(server, study_parts(1)[1], "0123456789abcdef").status_code == 404


def test_commit_of_several_studies_and_series_keeps_counts_and_frames(
    server: ServerProcess,
) -> None:
    session = open_session(server)
    studies = [StudySpec(patient_id=f"MULTI-{n}") for n in range(2)]
    parts = [
        ct_image(study, series, number, 16, 16)
        for study in studies
        for series in (generate_uid(), generate_uid())
        for number in range(1, 4)
    ]
    assert stow(server, parts[:1]).status_code == 200  # one already in the archive
    assert stow(server, parts, session).status_code == 200
    committed = httpx.post(f"{api(server)}/{session}/commit", timeout=60)
    assert committed.status_code == 200, committed.text
    assert committed.json()["instances"] == 12 and committed.json()["already_stored"] == 1
    for study in studies:
        [found] = httpx.get(
            f"{server.dicomweb}/studies",
            params={"StudyInstanceUID": study.study_instance_uid},
        ).json()
        assert found["00201206"]["Value"] == [2]  # NumberOfStudyRelatedSeries
        assert found["00201208"]["Value"] == [6]  # NumberOfStudyRelatedInstances
        for series in httpx.get(
            f"{server.dicomweb}/studies/{study.study_instance_uid}/series"
        ).json():
            assert series["00201209"]["Value"] == [3]  # NumberOfSeriesRelatedInstances
    # Every instance's frame comes back as stored (offsets recorded by the bulk path).
    for data in parts:
        dataset = pydicom.dcmread(io.BytesIO(data))
        frame = httpx.get(
            f"{server.dicomweb}/studies/{dataset.StudyInstanceUID}/series/"
            f"{dataset.SeriesInstanceUID}/instances/{dataset.SOPInstanceUID}/frames/1",
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
        assert frame.status_code == 200
        assert dataset.PixelData in frame.content


def test_upload_cli_into_a_session(server: ServerProcess, tmp_path: Path) -> None:
    session = open_session(server)
    study, parts = study_parts(2, patient_id="CLI-SESSION")
    for number, data in enumerate(parts):
        (tmp_path / f"{number}.dcm").write_bytes(data)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "upload",
            "--url",
            server.dicomweb,
            "--session",
            session,
            "--no-progress",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert visible(server, study) == HIDDEN
    assert httpx.get(f"{api(server)}/{session}").json()["instances"] == 2
