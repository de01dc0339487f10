"""Study complete by a quiet period: decided in the database, shared by several workers
(PostgreSQL: rows claimed with SKIP LOCKED, each order moved exactly once), and end to end
in a `tessera serve` whose worker finds an upload that has gone quiet."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tessera.archive import Archive
from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.scope import full_scope
from tessera.services import orders as o
from tessera.services.ingest import ingest_file
from tessera.services.study_complete import complete_ready_orders
from tessera.synthetic import StudySpec, ct_image, header_only_instance
from tests.conftest import migrated_archive


@pytest.fixture
def archive(tmp_path, database_url):  # type: ignore[no-untyped-def]
    opened = migrated_archive(tmp_path / "data", database_url)
    yield opened
    opened.close()


def _order_with_images(archive: Archive, number: int, tmp: Path) -> int:
    scope = full_scope(archive.default_tenant.id, "tech")
    with archive.database.write() as conn:
        order, _ = o.create_order(
            conn,
            scope,
            {"accession_number": f"Q{number}", "patient_id": "PAT-Q", "source": "default"},
        )
    data = header_only_instance(
        {
            "StudyInstanceUID": order.study_instance_uid,
            "SeriesInstanceUID": f"2.25.{900 + number}",
            "PatientID": "PAT-Q",
            "Modality": "CT",
        }
    )
    path = tmp / f"{number}.dcm"
    path.write_bytes(data)
    with archive.database.read() as conn:
        default = conn.execute(
            text("SELECT id FROM source WHERE tenant_id = :t AND name = 'default'"),
            {"t": scope.tenant_id},
        ).scalar_one()
    assert ingest_file(archive, scope, path, hashlib.sha256(data).hexdigest(), default).stored
    return order.id


def _status(archive: Archive, order_id: int) -> str:
    with archive.database.read() as conn:
        return o.get_order(conn, full_scope(archive.default_tenant.id), order_id).status


def test_quiet_period_and_workers_sharing_the_rows(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    orders = [_order_with_images(archive, n, tmp_path) for n in range(12)]
    assert {_status(archive, x) for x in orders} == {"IN_PROGRESS"}
    # Not quiet for an hour yet: nothing moves.
    with archive.database.write() as conn:
        assert complete_ready_orders(conn, quiet_seconds=3600) == []
    time.sleep(2.2)  # the database clock moves past the last instance (second precision)
    # Three workers at once, small batches: every order moved once, by exactly one worker.
    results: list[list[int]] = [[] for _ in range(3)]

    def work(slot: int) -> None:
        while True:
            with archive.database.write() as conn:
                done = complete_ready_orders(conn, quiet_seconds=1, limit=2)
            if not done:
                return
            results[slot].extend(done)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claimed = [order for batch in results for order in batch]
    assert sorted(claimed) == sorted(orders)
    with archive.database.read() as conn:
        for order_id in orders:
            history = o.status_history(conn, full_scope(archive.default_tenant.id), order_id)
            assert [h["to_status"] for h in history].count("IMAGES_READY") == 1


def test_serve_marks_a_quiet_upload_images_ready(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(
        env_extra={
            "TESSERA_STUDY_COMPLETE_QUIET_SECONDS": "2",
            "TESSERA_STUDY_COMPLETE_INTERVAL_SECONDS": "1",
            "TESSERA_WORKERS": "1",
        }
    ).start()
    api = f"{server.base_url}/api/v1"
    order = httpx.post(
        f"{api}/orders", json={"accession_number": "QS1", "patient_id": "PAT-1"}, timeout=30
    ).json()
    data = ct_image(
        StudySpec(patient_id="PAT-1", study_instance_uid=order["study_instance_uid"]),
        "2.25.4242",
        1,
        16,
        16,
    )
    boundary = multipart_writer.new_boundary()
    stored = httpx.post(
        f"{server.dicomweb}/studies",
        content=multipart_writer.body(boundary, [data]),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=30,
    )
    assert stored.status_code == 200, stored.text
    assert httpx.get(f"{api}/orders/{order['id']}").json()["status"] == "IN_PROGRESS"
    deadline = time.time() + 20
    status = ""
    while time.time() < deadline:
        status = httpx.get(f"{api}/orders/{order['id']}").json()["status"]
        if status == "IMAGES_READY":
            break
        time.sleep(0.25)
    assert status == "IMAGES_READY"
