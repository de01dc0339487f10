"""SIGKILL in the middle of a large STOW-RS request, then restart: no index row points at a
missing or partial file, nothing half-written is visible, orphan files are swept."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import httpx
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, index_rows


def slow_body(boundary: str, parts: int, stop: threading.Event) -> Iterator[bytes]:
    study = StudySpec(patient_name="CRASH^TEST")
    series = generate_uid()
    for n in range(1, parts + 1):
        if stop.is_set():
            return
        data = ct_image(study, series, n)
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        # Send each part in pieces so the kill lands inside a part as well as between parts.
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def consistent(server: ServerProcess) -> list[str]:
    """Every indexed instance has its complete file; returns the referenced blob keys."""
    rows = index_rows(server.database_url, "SELECT blob_key, sha256, size_bytes FROM instance")
    for blob_key, sha, size in rows:
        path = server.data_dir / "blobs" / blob_key
        data = path.read_bytes()
        assert len(data) == size
        assert hashlib.sha256(data).hexdigest() == sha
    metadata = index_rows(server.database_url, "SELECT count(*) FROM instance_metadata")[0][0]
    assert metadata == len(rows)
    return [r[0] for r in rows]


def test_sigkill_mid_upload_leaves_a_consistent_archive(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = server_factory(env_extra={"TESSERA_ORPHAN_GRACE_SECONDS": "0"}).start()
    boundary = multipart_writer.new_boundary()
    stop = threading.Event()
    errors: list[Exception] = []

    def upload() -> None:
        try:
            httpx.post(
                f"{server.dicomweb}/studies",
                content=slow_body(boundary, 400, stop),
                headers={"Content-Type": request_content_type(boundary)},
                timeout=120,
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    sender = threading.Thread(target=upload)
    sender.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        if index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0] >= 10:
            break
        time.sleep(0.05)
    server.kill()
    stop.set()
    sender.join(30)
    assert errors, "the upload should have been cut off by the kill"

    stored_before = consistent(server)
    assert len(stored_before) >= 10

    # What a crash can leave: an orphan blob (written, row never committed) and a spool file.
    blobs = server.data_dir / "blobs"
    orphan = blobs / "t1" / "ff" / "ee" / ("ffee" + "0" * 60 + ".dcm")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"half-indexed instance")
    (blobs / ".spool" / "part-crashed.tmp").write_bytes(b"partial upload")

    server.start()
    deadline = time.time() + 30
    while time.time() < deadline and '"sweep finished"' not in server.log():
        time.sleep(0.1)
    assert '"sweep finished"' in server.log()

    assert consistent(server) == stored_before
    assert list((blobs / ".spool").iterdir()) == []
    assert not orphan.exists()
    on_disk = sorted(p.relative_to(blobs).as_posix() for p in blobs.rglob("*.dcm"))
    assert on_disk == sorted(stored_before)
    # And the restarted server takes new uploads.
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
