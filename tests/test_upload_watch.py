"""`tessera upload --watch FOLDER` (issue 19 item 7) as a real process against a real server
that is stopped and started during the watch: files dropped before the server is up are
stored once it is; a file written slowly is sent only once complete; a restarted watcher
does not send again what was stored; `--move-to` moves stored files.

The watcher is a client: the server's index is the same on either database, so this runs on
SQLite only (like tests/test_upload_cli.py)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from pydicom.uid import generate_uid

from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, index_rows

SETTLE = 1.5


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


class WatchProcess:
    def __init__(self, server: ServerProcess, folder: Path, log: Path, *args: str) -> None:
        self.log_path = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tessera.cli",
                "upload",
                "--url",
                server.dicomweb,
                "--watch",
                str(folder),
                "--settle",
                str(SETTLE),
                "--poll",
                "0.2",
                "--max-backoff",
                "1",
                *args,
            ],
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stored_count(server: ServerProcess) -> int:
    return index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0]


def uploads(server: ServerProcess) -> int:
    """STOW-RS requests the server audited (a resend would add one)."""
    sql = "SELECT count(*) FROM audit_event WHERE action = 'upload'"
    return index_rows(server.database_url, sql)[0][0]


def stored_sha(server: ServerProcess, sop_instance_uid: str) -> str | None:
    rows = index_rows(
        server.database_url,
        "SELECT sha256 FROM instance WHERE sop_instance_uid = :uid",
        uid=sop_instance_uid,
    )
    return rows[0][0] if rows else None


def test_watch_survives_the_server_and_itself(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = server_factory(env_extra={"TESSERA_WORKERS": "1"})
    folder = tmp_path / "drop"
    folder.mkdir()
    study = StudySpec(patient_name="WATCH^FOLDER")
    series = generate_uid()
    images = [ct_image(study, series, n, rows=32, columns=32) for n in range(1, 8)]
    for n in range(3):  # dropped before the server is up
        (folder / f"early{n}.dcm").write_bytes(images[n])

    watcher = WatchProcess(server, folder, tmp_path / "watch1.log")
    try:
        wait_for(lambda: "server unavailable" in watcher.output(), "the watcher to retry")
        server.start(timeout=120)
        wait_for(lambda: stored_count(server) == 3, "the early files")

        # A file written slowly (pauses shorter than the settle time) is sent only whole.
        slow = ct_image(study, series, 10, rows=64, columns=64)
        with open(folder / "slow.dcm", "wb") as fh:
            step = len(slow) // 6 + 1
            for start in range(0, len(slow), step):
                fh.write(slow[start : start + step])
                fh.flush()
                time.sleep(SETTLE / 3)
        wait_for(lambda: stored_count(server) == 4, "the slowly written file")
        slow_uid = sop_uid_of(slow)
        assert stored_sha(server, slow_uid) == hashlib.sha256(slow).hexdigest()

        # The server goes away and comes back; a file dropped meanwhile is stored after.
        server.stop()
        (folder / "sub").mkdir()
        (folder / "sub" / "while-down.dcm").write_bytes(images[3])
        retries = watcher.output().count("server unavailable")
        wait_for(lambda: watcher.output().count("server unavailable") > retries, "a retry")
        server.start(timeout=120)
        wait_for(lambda: stored_count(server) == 5, "the file dropped while the server was down")
    finally:
        watcher.stop()
    assert "failed" not in watcher.output().lower().replace("failed 0", "")

    state = orjson.loads((folder / ".tessera-upload.json").read_bytes())["files"]
    assert sorted(state) == [
        "early0.dcm",
        "early1.dcm",
        "early2.dcm",
        "slow.dcm",
        "sub/while-down.dcm",
    ]
    assert all(entry["outcome"] == "stored" for entry in state.values())
    assert state["slow.dcm"]["size"] == len(slow)
    assert state["slow.dcm"]["sop_instance_uid"] == slow_uid

    # A restarted watcher sends nothing it stored; new files are stored and moved.
    # Audit events are written in batches (half a second): the last upload's may still be queued.
    wait_for(lambda: uploads(server) >= 3, "the uploads' audit events")
    before = uploads(server)
    moved = tmp_path / "done"
    watcher = WatchProcess(server, folder, tmp_path / "watch2.log", "--move-to", str(moved))
    try:
        (folder / "late.dcm").write_bytes(images[4])
        wait_for(lambda: (moved / "late.dcm").exists(), "the new file to be stored and moved")
        time.sleep(SETTLE + 1)  # time enough to (wrongly) resend the others
    finally:
        watcher.stop()
    assert uploads(server) == before + 1
    assert stored_count(server) == 6
    assert not (folder / "late.dcm").exists()
    assert (moved / "late.dcm").read_bytes() == images[4]
    assert (folder / "early0.dcm").exists()  # stored before --move-to: left in place


def sop_uid_of(data: bytes) -> str:
    """The SOP Instance UID of a Part 10 file's bytes."""
    import io

    import pydicom

    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def test_watch_of_a_missing_folder_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "upload", "--watch", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert result.returncode == 2
    assert "no such folder" in result.stdout
