"""Issue 19 item 8: SIGKILL of a real server (its whole process group) during the commit of
a 2,000-instance upload session leaves the session either fully committed or fully
uncommitted. After each restart QIDO shows all of the session's instances or none, and the
session's state agrees (committed, or still open with everything in it and committable).

The kill is aimed at the commit's write transaction: the test watches the index for it (on
SQLite, the write lock is held: `BEGIN IMMEDIATE` from the test fails at once; on
PostgreSQL, a backend of the server holds a RowExclusiveLock on `instance`) and kills the
server the moment it sees it, so the first kill is proven to land mid-commit. Later kills
come after a short delay; the last commit runs to its end."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
from pydicom.uid import generate_uid
from sqlalchemy import make_url

from tessera.client.stow import request_content_type
from tessera.dicomweb.multipart_writer import new_boundary
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, index_rows
from tests.document_files import multipart_body

INSTANCES = 2000
PER_REQUEST = 500
STUDY_INSTANCES = "00201208"  # Number of Study Related Instances


def add_instances(server: ServerProcess, session: str, study: StudySpec) -> None:
    """2,000 8x8 CT images in four STOW-RS requests into the session (two series)."""
    series = [generate_uid(), generate_uid()]
    parts = [ct_image(study, series[n % 2], n, rows=8, columns=8) for n in range(1, INSTANCES + 1)]
    for start in range(0, INSTANCES, PER_REQUEST):
        boundary = new_boundary()
        response = httpx.post(
            f"{server.dicomweb}/upload-sessions/{session}/studies",
            content=multipart_body(parts[start : start + PER_REQUEST], boundary),
            headers={"Content-Type": request_content_type(boundary)},
            timeout=600,
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["00081199"]["Value"]) == PER_REQUEST


def writing(database_url: str) -> bool:
    """True while a server holds a write transaction that inserts into `instance`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database or "", timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc)
        finally:
            conn.close()
    rows = index_rows(
        database_url,
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = 'instance' AND l.mode = 'RowExclusiveLock' "
        "AND l.pid <> pg_backend_pid()",
    )
    return rows[0][0] > 0


def shown(server: ServerProcess, study: StudySpec) -> int:
    """Instances of the study QIDO-RS shows (0 when the study is not found)."""
    found = httpx.get(
        f"{server.dicomweb}/studies",
        params={"StudyInstanceUID": study.study_instance_uid},
        timeout=60,
    ).json()
    return found[0][STUDY_INSTANCES]["Value"][0] if found else 0


def session_state(server: ServerProcess, session: str) -> tuple[str, int]:
    view = httpx.get(f"{server.base_url}/api/v1/upload-sessions/{session}", timeout=60).json()
    return view["state"], view["instances"]


def all_or_nothing(server: ServerProcess, session: str, study: StudySpec) -> bool:
    """After a restart: everything or nothing visible, the session agreeing; True if committed."""
    visible = shown(server, study)
    indexed = index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0]
    state, held = session_state(server, session)
    if visible == 0:
        assert indexed == 0
        assert (state, held) == ("open", INSTANCES)
        return False
    assert visible == indexed == INSTANCES
    assert state == "committed"
    return True


def test_sigkill_during_commit_is_all_or_nothing(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = server_factory(env_extra={"TESSERA_WORKERS": "1"}).start(timeout=120)
    session = httpx.post(f"{server.base_url}/api/v1/upload-sessions", json={}, timeout=30)
    assert session.status_code == 201, session.text
    session_id = session.json()["id"]
    study = StudySpec(patient_name="COMMIT^CRASH")
    add_instances(server, session_id, study)
    assert shown(server, study) == 0

    # (delay after the write transaction is seen, or None: let the commit finish)
    plan: list[float | None] = [0.0, 0.2, None]
    proven_mid_commit = False
    committed = False
    for delay in plan:
        answers: list[int] = []

        def commit(answers: list[int]) -> None:
            try:
                answers.append(
                    httpx.post(
                        f"{server.base_url}/api/v1/upload-sessions/{session_id}/commit",
                        timeout=600,
                    ).status_code
                )
            except httpx.HTTPError:
                answers.append(-1)

        sender = threading.Thread(target=commit, args=(answers,))
        sender.start()
        if delay is None:
            sender.join(600)
            assert answers == [200]
            committed = True
            break
        deadline = time.time() + 300
        seen = False
        while time.time() < deadline and not answers:
            if writing(server.database_url):
                seen = True
                break
            time.sleep(0.005)
        assert seen, f"the commit's write transaction was never seen (answer {answers})"
        time.sleep(delay)
        server.kill()
        sender.join(60)
        server.start(timeout=120)
        settle = time.time() + 60  # the start-up sweep writes too: let it finish first
        while time.time() < settle and '"sweep finished"' not in server.log():
            time.sleep(0.1)
        committed = all_or_nothing(server, session_id, study)
        if not committed and answers != [200]:
            proven_mid_commit = True  # killed inside the write transaction; nothing shows
        if committed:
            break
    assert proven_mid_commit, "no kill landed inside the commit's write transaction"
    assert committed
    assert all_or_nothing(server, session_id, study)
