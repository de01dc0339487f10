"""STOW-RS against a real server process (SQLite and PostgreSQL): responses, statuses,
bad input, duplicates and conflicts, concurrency."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import StudySpec, ct_image, mr_rle_image
from tests.conftest import ServerProcess, index_rows

# Every test here also runs against a real S3-compatible object store (SeaweedFS).
BLOB_STORES = ("filesystem", "s3")

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"


def stow(
    server: ServerProcess, parts: list[bytes], study: str | None = None, **kwargs
) -> httpx.Response:  # type: ignore[no-untyped-def]
    boundary = multipart_writer.new_boundary()
    url = f"{server.dicomweb}/studies" + (f"/{study}" if study else "")
    return httpx.post(
        url,
        content=multipart_writer.body(boundary, parts, **kwargs),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )


def referenced(response: httpx.Response) -> list[dict]:
    return response.json().get(REFERENCED_SOP_SEQUENCE, {}).get("Value", [])


def failed(response: httpx.Response) -> list[dict]:
    return response.json().get(FAILED_SOP_SEQUENCE, {}).get("Value", [])


def reasons(response: httpx.Response) -> list[int]:
    return [item[FAILURE_REASON]["Value"][0] for item in failed(response)]


def value(item: dict, tag: str) -> object:
    return item[tag]["Value"][0]


def instance_count(server: ServerProcess) -> int:
    return index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0]


def assert_still_serving(server: ServerProcess) -> None:
    assert server.alive()
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200


def edited(data: bytes, **changes: object) -> bytes:
    """A copy of a Part 10 file with attributes changed (None deletes)."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    for keyword, new in changes.items():
        if new is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, new)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=False)
    return out.getvalue()


TWO_WORKERS = {"TESSERA_WORKERS": "2"}


@pytest.fixture
def study() -> StudySpec:
    return StudySpec(patient_name="STOW^TEST", patient_id="STOW-1")


def test_store_instances_all_succeed(server: ServerProcess, study: StudySpec) -> None:
    series = generate_uid()
    parts = [ct_image(study, series, n, rows=64, columns=64) for n in range(1, 4)]
    parts.append(mr_rle_image(study, generate_uid(), 1, size=64))
    response = stow(server, parts)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    assert value(body, "00081190") == f"{server.dicomweb}/studies/{study.study_instance_uid}"
    items = referenced(response)
    assert len(items) == 4 and FAILED_SOP_SEQUENCE not in body
    sent = {pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID for p in parts}
    assert {value(i, "00081155") for i in items} == sent
    for item in items:
        url = value(item, "00081190")
        assert url.startswith(f"{server.dicomweb}/studies/{study.study_instance_uid}/series/")
        assert url.endswith(f"/instances/{value(item, '00081155')}")
    assert instance_count(server) == 4
    counts = index_rows(
        server.database_url,
        "SELECT number_of_study_related_series, number_of_study_related_instances, "
        "modalities_in_study FROM study",
    )
    assert tuple(counts[0]) == (2, 4, "CT\\MR")


def test_stored_file_keeps_exact_bytes(server: ServerProcess, study: StudySpec) -> None:
    data = ct_image(study, generate_uid(), rows=32, columns=32)
    assert stow(server, [data]).status_code == 200
    [(blob_key, sha)] = index_rows(server.database_url, "SELECT blob_key, sha256 FROM instance")
    stored = server.read_blob(blob_key)
    assert stored == data and hashlib.sha256(data).hexdigest() == sha


def test_retrieve_url_follows_forwarded_headers(server: ServerProcess, study: StudySpec) -> None:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=multipart_writer.body(
            boundary, [ct_image(study, generate_uid(), rows=16, columns=16)]
        ),
        headers={
            "Content-Type": request_content_type(boundary),
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "pacs.example.org",
            "X-Forwarded-Prefix": "/archive",
        },
    )
    assert value(response.json(), "00081190").startswith(
        "https://pacs.example.org/archive/dicomweb/studies/"
    )


def test_mixed_good_and_bad_parts_is_202(server: ServerProcess, study: StudySpec) -> None:
    good = ct_image(study, generate_uid(), rows=16, columns=16)
    response = stow(server, [good, b"this is not DICOM at all", good[: len(good) // 2]])
    assert response.status_code == 202
    assert len(referenced(response)) == 1
    assert sorted(reasons(response)) == sorted([0xC001, 0xC002])
    assert instance_count(server) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"SOPInstanceUID": None}, 0xA900),
        ({"StudyInstanceUID": None}, 0xA900),
        ({"SeriesInstanceUID": "1.2.abc"}, 0xA900),
        ({"SOPInstanceUID": "1." + "2" * 70}, 0xA900),
        ({"SOPInstanceUID": "../../../../etc/passwd"}, 0xA900),
        ({"StudyInstanceUID": "1.2/../../x"}, 0xA900),
    ],
    ids=[
        "no-sop-uid",
        "no-study-uid",
        "bad-series-uid",
        "uid-too-long",
        "traversal-sop",
        "traversal-study",
    ],
)
def test_bad_uids_are_refused_with_a900(
    server: ServerProcess, study: StudySpec, change, reason
) -> None:  # type: ignore[no-untyped-def]
    data = edited(ct_image(study, generate_uid(), rows=16, columns=16), **change)
    response = stow(server, [data])
    assert response.status_code == 400
    assert reasons(response) == [reason]
    assert instance_count(server) == 0
    # Nothing escaped the blob store.
    assert not (server.data_dir.parent / "etc").exists()
    assert_still_serving(server)


def test_all_unreadable_is_400_and_study_mismatch_is_409(
    server: ServerProcess, study: StudySpec
) -> None:
    response = stow(server, [b"\x00" * 300, b"DICM"])
    assert response.status_code == 400
    assert len(failed(response)) == 2
    other_study = generate_uid()
    mismatch = stow(
        server, [ct_image(study, generate_uid(), rows=16, columns=16)], study=other_study
    )
    assert mismatch.status_code == 409
    assert reasons(mismatch) == [0xC409]
    assert instance_count(server) == 0


def test_target_study_stores_matching_and_refuses_others(
    server: ServerProcess, study: StudySpec
) -> None:
    matching = ct_image(study, generate_uid(), rows=16, columns=16)
    foreign = ct_image(StudySpec(), generate_uid(), rows=16, columns=16)
    response = stow(server, [matching, foreign], study=study.study_instance_uid)
    assert response.status_code == 202
    assert len(referenced(response)) == 1 and reasons(response) == [0xC409]


def test_wrong_part_media_type_fails_that_part(server: ServerProcess, study: StudySpec) -> None:
    boundary = multipart_writer.new_boundary()
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom+json\r\n\r\n[]\r\n".encode()
        + f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + ct_image(study, generate_uid(), rows=16, columns=16)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=body,
        headers={"Content-Type": request_content_type(boundary)},
    )
    assert response.status_code == 202
    assert reasons(response) == [0xC003]


@pytest.mark.parametrize(
    ("content_type_header", "status", "named"),
    [
        ('multipart/related; type="application/dicom"', 400, "boundary"),
        ("application/json", 415, "Content-Type"),
        (  # metadata and bulk data (tests/test_stow_json.py) without a metadata part
            'multipart/related; type="application/dicom+json"; boundary=x',
            400,
            "application/dicom+json metadata part",
        ),
        ('multipart/related; type="application/xml"; boundary=x', 415, "application/xml"),
        ("", 415, "none"),
    ],
)
def test_request_level_errors_name_the_problem(
    server: ServerProcess, content_type_header, status, named
) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=b"--x\r\n\r\nabc\r\n--x--",
        headers={"Content-Type": content_type_header},
    )
    assert response.status_code == status
    assert named in response.json()["detail"]
    assert_still_serving(server)


def test_body_without_any_boundary_is_400(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=b"no parts here at all",
        headers={"Content-Type": request_content_type("abc")},
    )
    assert response.status_code == 400
    assert "no multipart part" in response.json()["detail"]


def test_invalid_study_uid_in_path_is_400(server: ServerProcess, study: StudySpec) -> None:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies/1.2.3abc",
        content=multipart_writer.body(
            boundary, [ct_image(study, generate_uid(), rows=16, columns=16)]
        ),
        headers={"Content-Type": request_content_type(boundary)},
    )
    assert response.status_code == 400
    assert "StudyInstanceUID" in response.json()["detail"]


def test_truncated_multipart_stores_complete_parts_only(
    server: ServerProcess, study: StudySpec
) -> None:
    series = generate_uid()
    parts = [ct_image(study, series, n, rows=32, columns=32) for n in range(1, 4)]
    boundary = multipart_writer.new_boundary()
    body = multipart_writer.body(boundary, parts)
    # Cut inside the third part: parts one and two are complete.
    cut = body.index(parts[2][200:260])
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=body[:cut],
        headers={"Content-Type": request_content_type(boundary)},
    )
    assert response.status_code == 202
    assert "truncated" in response.headers["warning"]
    stored = {value(i, "00081155") for i in referenced(response)}
    expected = {pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID for p in parts[:2]}
    assert stored == expected
    assert instance_count(server) == 2
    assert list(server.spool_dir.iterdir()) == []


def test_request_over_the_limit_is_413(server_factory, study: StudySpec) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(env_extra={"TESSERA_MAX_REQUEST_BYTES": "100000"}).start()
    response = stow(server, [ct_image(study, generate_uid(), rows=256, columns=256)])
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert instance_count(server) == 0
    assert_still_serving(server)


def test_same_instance_twice_is_idempotent(server: ServerProcess, study: StudySpec) -> None:
    data = ct_image(study, generate_uid(), rows=16, columns=16)
    first, second = stow(server, [data]), stow(server, [data])
    assert first.status_code == second.status_code == 200
    assert instance_count(server) == 1
    assert len(server.blob_keys()) == 1


def test_different_object_under_same_uid_is_refused(
    server: ServerProcess, study: StudySpec
) -> None:
    data = ct_image(study, generate_uid(), rows=16, columns=16)
    assert stow(server, [data]).status_code == 200
    changed = edited(data, StudyDescription="changed content")
    response = stow(server, [changed])
    assert response.status_code == 409
    assert reasons(response) == [0x0111]
    [(sha,)] = index_rows(server.database_url, "SELECT sha256 FROM instance")
    assert sha == hashlib.sha256(data).hexdigest()


def test_overwrite_policy_replaces_the_object(server: ServerProcess, study: StudySpec) -> None:
    from sqlalchemy import create_engine, text

    data = ct_image(study, generate_uid(), rows=16, columns=16)
    assert stow(server, [data]).status_code == 200
    engine = create_engine(server.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE tenant SET duplicate_policy = 'overwrite'"))
    engine.dispose()
    changed = edited(data, StudyDescription="corrected")
    assert stow(server, [changed]).status_code == 200
    [(sha, blob_key)] = index_rows(server.database_url, "SELECT sha256, blob_key FROM instance")
    assert sha == hashlib.sha256(changed).hexdigest()
    assert server.read_blob(blob_key) == changed
    # The replaced file is gone; counts did not double.
    assert len(server.blob_keys()) == 1
    assert (
        index_rows(server.database_url, "SELECT number_of_study_related_instances FROM study")[0][0]
        == 1
    )


def test_eight_concurrent_uploads_of_one_instance_store_one_copy(
    server_factory: Callable[..., ServerProcess], study: StudySpec
) -> None:
    server = server_factory(env_extra=TWO_WORKERS).start()  # races across processes too
    data = ct_image(study, generate_uid(), rows=128, columns=128)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: stow(server, [data]), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert instance_count(server) == 1
    assert len(server.blob_keys()) == 1


def test_concurrent_uploads_into_one_study_keep_counts(
    server_factory: Callable[..., ServerProcess], study: StudySpec
) -> None:
    server = server_factory(env_extra=TWO_WORKERS).start()  # races across processes too
    series = [generate_uid() for _ in range(4)]
    parts = {
        worker: [ct_image(study, series[worker], n, rows=16, columns=16) for n in range(1, 6)]
        for worker in range(4)
    }

    def send(worker: int) -> int:
        return stow(server, parts[worker]).status_code

    # Each series is sent twice, concurrently: repeats are idempotent.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, [0, 1, 2, 3, 0, 1, 2, 3]))
    assert statuses == [200] * 8
    assert instance_count(server) == 20
    row = index_rows(
        server.database_url,
        "SELECT number_of_study_related_series, number_of_study_related_instances FROM study",
    )[0]
    assert tuple(row) == (4, 20)
    per_series = index_rows(
        server.database_url, "SELECT number_of_series_related_instances FROM series"
    )
    assert sorted(r[0] for r in per_series) == [5, 5, 5, 5]


def test_single_application_dicom_body(server: ServerProcess, study: StudySpec) -> None:
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=ct_image(study, generate_uid(), rows=16, columns=16),
        headers={"Content-Type": "application/dicom"},
    )
    assert response.status_code == 200
    assert len(referenced(response)) == 1


def test_unknown_source_is_400(server: ServerProcess, study: StudySpec) -> None:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        params={"source": "NoSuchClinic"},
        content=multipart_writer.body(
            boundary, [ct_image(study, generate_uid(), rows=16, columns=16)]
        ),
        headers={"Content-Type": request_content_type(boundary)},
    )
    assert response.status_code == 400
    assert "NoSuchClinic" in response.json()["detail"]
    assert instance_count(server) == 0


def test_instance_is_labelled_with_its_source(
    server: ServerProcess, study: StudySpec, tmp_path: Path
) -> None:
    import subprocess
    import sys

    env_args = ["--database-url", server.database_url, "--data-dir", str(server.data_dir)]
    subprocess.run(
        [sys.executable, "-m", "tessera.cli", "sources", "add", "ClinicA", *env_args], check=True
    )
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        params={"source": "ClinicA"},
        content=multipart_writer.body(
            boundary, [ct_image(study, generate_uid(), rows=16, columns=16)]
        ),
        headers={"Content-Type": request_content_type(boundary)},
    )
    assert response.status_code == 200
    rows = index_rows(
        server.database_url,
        "SELECT s.name FROM instance i JOIN source s ON s.id = i.source_pk",
    )
    assert [r[0] for r in rows] == ["ClinicA"]


def test_refusals_inside_a_group_commit_leave_only_themselves_out(
    server: ServerProcess, study: StudySpec
) -> None:
    """Parts are recorded several per transaction (a savepoint each): a conflict, a series
    of another study, an unreadable part and a repeat inside one request are refused (or
    deduplicated) on their own; every other part is stored with its file, in part order."""
    series = generate_uid()
    earlier = ct_image(study, series, 1, rows=16, columns=16)
    other_study = StudySpec(patient_name="OTHER^STUDY", patient_id="STOW-2")
    taken_series = generate_uid()
    assert (
        stow(server, [earlier, ct_image(other_study, taken_series, 1, 16, 16)]).status_code == 200
    )
    good = [ct_image(study, series, n, rows=16, columns=16) for n in range(2, 12)]
    parts = [
        *good[:3],
        edited(earlier, StudyDescription="changed content"),  # 0x0111, mid-group
        good[3],
        ct_image(study, taken_series, 2, rows=16, columns=16),  # series of another study
        *good[4:7],
        b"not DICOM",
        good[0],  # the same object again in the same request: stored once
        *good[7:],
    ]
    response = stow(server, parts)
    assert response.status_code == 202
    assert reasons(response) == [0x0111, 0xC410, 0xC001]  # in part order
    stored_uids = [value(item, "00081155") for item in referenced(response)]
    good_uids = [pydicom.dcmread(io.BytesIO(g)).SOPInstanceUID for g in good]
    assert stored_uids == [*good_uids[:7], good_uids[0], *good_uids[7:]]
    assert instance_count(server) == 2 + len(good)
    rows = index_rows(server.database_url, "SELECT blob_key, sha256 FROM instance")
    for blob_key, sha in rows:
        assert hashlib.sha256(server.read_blob(blob_key)).hexdigest() == sha
    [(sha,)] = index_rows(
        server.database_url,
        "SELECT sha256 FROM instance WHERE sop_instance_uid = :uid",
        uid=pydicom.dcmread(io.BytesIO(earlier)).SOPInstanceUID,
    )
    assert sha == hashlib.sha256(earlier).hexdigest()
