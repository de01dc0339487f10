"""The reviewed DICOM listener (issue 19 item 6): a DIMSE peer registered as `staged` sends
with dcmtk's storescu into a real `tessera serve`; its C-STOREs wait in upload sessions (one
per association and study), invisible to QIDO-RS, WADO-RS and C-FIND, until a user of the
tenant commits (or discards) them through the upload sessions API. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tessera.auth import permissions
from tessera.index.sources import add_source, source_pk_by_name
from tessera.scope import Scope, full_scope
from tessera.services import failure_reasons as p
from tessera.services import upload_sessions as sessions
from tessera.services.listener_sessions import ListenerSessions
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, index_rows, migrated_archive
from tests.dimse_support import SERVER_AET, add_peer, dcmtk, run, start_dimse_server, tessera_cli

STAGED = "MODALITY"
FINDER = "FINDER"


def study_files(folder: Path, count: int, **spec) -> tuple[StudySpec, list[Path]]:  # type: ignore[no-untyped-def]
    study = StudySpec(**spec)
    series = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(1, count + 1):
        path = folder / f"{study.study_instance_uid[-8:]}-{number}.dcm"
        path.write_bytes(ct_image(study, series, number, 16, 16))
        paths.append(path)
    return study, paths


def storescu(server: ServerProcess, calling: str, paths: list[Path]) -> str:
    result = run(
        [
            dcmtk("storescu"),
            "-v",
            "-aet",
            calling,
            "-aec",
            SERVER_AET,
            "127.0.0.1",
            str(server.dimse_port),  # type: ignore[attr-defined]
            *map(str, paths),
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def cfind_studies(server: ServerProcess, study: StudySpec, out: Path) -> int:
    out.mkdir(parents=True)
    result = run(
        [
            dcmtk("findscu"),
            "-S",
            "-aet",
            FINDER,
            "-aec",
            SERVER_AET,
            "-X",
            "-od",
            str(out),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study.study_instance_uid}",
            "127.0.0.1",
            str(server.dimse_port),  # type: ignore[attr-defined]
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return len([pydicom.dcmread(p) for p in out.iterdir()])


def sessions_api(server: ServerProcess) -> str:
    return f"{server.base_url}/api/v1/upload-sessions"


def qido_instances(server: ServerProcess, study: StudySpec) -> int:
    found = httpx.get(
        f"{server.dicomweb}/instances",
        params={"StudyInstanceUID": study.study_instance_uid},
        timeout=30,
    )
    assert found.status_code == 200, found.text
    return len(found.json())


def wado_status(server: ServerProcess, study: StudySpec) -> int:
    return httpx.get(
        f"{server.dicomweb}/studies/{study.study_instance_uid}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        timeout=30,
    ).status_code


def received_sessions(server: ServerProcess) -> list[dict]:
    listed = httpx.get(sessions_api(server), timeout=30)
    assert listed.status_code == 200, listed.text
    return [s for s in listed.json() if s["received_from"] == STAGED]


def session_of(server: ServerProcess, study: StudySpec, state: str = "open") -> list[dict]:
    """The staged sessions (full views) that hold `study`, in `state`."""
    views = [
        httpx.get(f"{sessions_api(server)}/{s['id']}", timeout=30).json()
        for s in received_sessions(server)
        if s["state"] == state
    ]
    return [
        v
        for v in views
        if study.study_instance_uid in {x["StudyInstanceUID"] for x in v["studies"]}
    ]


def test_staged_peer_stores_wait_for_review(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory)
    tessera_cli(server, "sources", "add", "ClinicA")
    add_peer(server, STAGED, "--source", "ClinicA", "--staged", "--no-query")
    add_peer(server, FINDER, "--no-store")
    listed = tessera_cli(server, "peers", "list").stdout
    assert f"{STAGED}\t" in listed and "\tstaged\t" in listed
    assert listed.count("\tstaged\t") == 1  # FINDER stores directly (it may not store at all)

    first, first_files = study_files(tmp_path / "first", 3, patient_name="STAGED^ONE")
    second, second_files = study_files(
        tmp_path / "second", 2, patient_name="STAGED^TWO", patient_id="PAT-2"
    )
    # One association, two studies: two sessions, each holding its study.
    storescu(server, STAGED, first_files + second_files)

    for study in (first, second):
        assert qido_instances(server, study) == 0
        assert wado_status(server, study) == 404
    assert cfind_studies(server, first, tmp_path / "find-before") == 0
    assert index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0] == 0

    sessions = received_sessions(server)
    assert len(sessions) == 2 and {s["state"] for s in sessions} == {"open"}
    assert {s["owner"] for s in sessions} == {f"dimse:{STAGED}"}
    [first_view] = session_of(server, first)
    [second_view] = session_of(server, second)
    assert first_view["id"] != second_view["id"]
    assert first_view["instances"] == 3 and first_view["source"] == "ClinicA"
    assert first_view["patients"] == [
        {"PatientID": "PAT-1", "PatientName": "STAGED^ONE", "studies": 1}
    ]
    assert second_view["instances"] == 2
    assert second_view["received_from"] == STAGED
    assert STAGED in first_view["description"]

    # A second association with the same study: a session of its own (per association).
    storescu(server, STAGED, first_files[:1])
    assert len(session_of(server, first)) == 2
    assert qido_instances(server, first) == 0

    # A user commits the first study's session: everything visible at once, labelled with
    # the peer's source; the other session of that study, still open, is discarded.
    committed = httpx.post(f"{sessions_api(server)}/{first_view['id']}/commit", timeout=60)
    assert committed.status_code == 200, committed.text
    assert qido_instances(server, first) == 3
    assert wado_status(server, first) == 200
    assert cfind_studies(server, first, tmp_path / "find-after") == 1
    sources = index_rows(
        server.database_url,
        "SELECT DISTINCT source.name FROM instance JOIN source ON source.id = instance.source_pk",
    )
    assert [row[0] for row in sources] == ["ClinicA"]
    [resent] = session_of(server, first)
    assert resent["instances"] == 1
    discarded = httpx.post(f"{sessions_api(server)}/{resent['id']}/discard", timeout=30)
    assert discarded.status_code == 200, discarded.text
    assert qido_instances(server, first) == 3  # the committed copy stays

    # Discarded: never visible, the session closed.
    gone = httpx.post(f"{sessions_api(server)}/{second_view['id']}/discard", timeout=30)
    assert gone.status_code == 200, gone.text
    assert qido_instances(server, second) == 0 and wado_status(server, second) == 404
    closed = httpx.get(f"{sessions_api(server)}/{second_view['id']}", timeout=30).json()
    assert closed["state"] == "discarded" and closed["instances"] == 0
    assert server.alive()


def test_peer_made_staged_through_the_admin_api(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory)
    peers = f"{server.base_url}/api/v1/peers"
    body = {"host": "127.0.0.1", "port": 0, "staged": True}
    saved = httpx.put(f"{peers}/{STAGED}", json=body, timeout=30)
    assert saved.status_code == 201, saved.text
    assert saved.json()["staged"] is True
    assert httpx.put(f"{peers}/{STAGED}", json={**body, "staged": "yes"}).status_code == 400

    study, files = study_files(tmp_path / "study", 1)
    storescu(server, STAGED, files)
    assert qido_instances(server, study) == 0
    [view] = session_of(server, study)
    assert view["source"] == "default"

    # Back to direct storage: the next C-STORE is visible at once.
    direct = httpx.put(f"{peers}/{STAGED}", json={**body, "staged": False}, timeout=30)
    assert direct.status_code == 200 and direct.json()["staged"] is False
    other, other_files = study_files(tmp_path / "other", 1)
    storescu(server, STAGED, other_files)
    assert qido_instances(server, other) == 1
    assert qido_instances(server, study) == 0


def _received(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / f"spool-{len(list(tmp_path.iterdir()))}.dcm"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_listener_sessions_in_process(tmp_path: Path, database_url: str) -> None:
    """A session committed while its association still sends is not reopened (the rest goes
    into a new one); a mismatched C-STORE opens nothing; who finds received sessions."""
    archive = migrated_archive(tmp_path / "data", database_url)
    try:
        tenant = archive.default_tenant.id
        with archive.database.write() as conn:
            add_source(conn, tenant, "ClinicA")
            add_source(conn, tenant, "ClinicB")
            a = source_pk_by_name(conn, tenant, "ClinicA")
            b = source_pk_by_name(conn, tenant, "ClinicB")
        assert a is not None and b is not None
        peer = Scope(
            tenant_id=tenant,
            upload_source_pks=frozenset({a}),
            permissions=frozenset({permissions.UPLOAD}),
            principal=f"dimse:{STAGED}",
        )
        listener = ListenerSessions(archive, peer, a, STAGED)
        spool = tmp_path / "spool"
        spool.mkdir()
        study, series = StudySpec(), generate_uid()
        first = ct_image(study, series, 1, 16, 16)
        wrong = listener.store(*_received(spool, first), ("1.2.840.10008.5.1.4.1.1.2", "1.2.3"))
        assert not wrong.stored and wrong.failure_reason == p.MISSING_OR_INVALID_UID
        assert "does not match the request" in wrong.message
        user = full_scope(tenant, "alice")
        assert sessions.list_for(archive, user) == []  # the refused one opened nothing

        assert listener.store(*_received(spool, first)).stored
        [opened] = sessions.list_for(archive, user)
        assert opened.received_from == STAGED and opened.owner == f"dimse:{STAGED}"
        assert sessions.commit(archive, user, opened.public_id).instances == 1
        assert listener.store(*_received(spool, ct_image(study, series, 2, 16, 16))).stored
        listed = sessions.list_for(archive, user)
        assert sorted(s.state for s in listed) == ["committed", "open"]
        reopened = next(s for s in listed if s.state == "open")
        assert sessions.describe(archive, user, reopened.public_id).instances == 1
        assert list(spool.iterdir()) == []  # every received file consumed

        # Who finds the received session: readers and uploaders of ClinicA in the tenant.
        def finds(scope: Scope) -> bool:
            return reopened.public_id in {s.public_id for s in sessions.list_for(archive, scope)}

        def locked(reads: set[int] | None, uploads: set[int] | None) -> Scope:
            return Scope(
                tenant_id=tenant,
                source_pks=None if reads is None else frozenset(reads),
                upload_source_pks=None if uploads is None else frozenset(uploads),
                permissions=frozenset({permissions.UPLOAD}),
                principal="bob",
            )

        assert finds(locked(None, None)) and finds(locked({a}, {a}))
        assert not finds(locked({b}, {b}))
        assert not finds(locked({b}, None))  # may not read ClinicA
        assert not finds(locked(None, {b}))  # may not upload to ClinicA
        assert not finds(full_scope(tenant + 1000, "alice"))  # another tenant
        for scope in (locked({b}, {b}), full_scope(tenant + 1000, "alice")):
            with pytest.raises(sessions.SessionProblem) as refused:
                sessions.commit(archive, scope, reopened.public_id)
            assert refused.value.status == 404
    finally:
        archive.close()
