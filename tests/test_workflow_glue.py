"""The workflow glue between orders, upload sessions, reports and the change feed:
a preliminary report makes the study's orders REPORTED and a signed one FINAL (an addendum
keeps FINAL); a committed upload session completes its studies and their orders at once;
`order.status_changed`, `study.complete` (once per study) and `upload_session.committed`
are in the change feed exactly when their transaction commits. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tessera.archive import Archive
from tessera.index import changes
from tessera.index.changes import Change, read_changes
from tessera.index.sources import source_pk_by_name
from tessera.index.webhooks import Subscription
from tessera.scope import Scope, full_scope
from tessera.services import orders as o
from tessera.services import reports
from tessera.services import upload_sessions as sessions
from tessera.services.ingest import ingest_file
from tessera.services.study_complete import run_once
from tessera.synthetic import header_only_instance
from tests.conftest import migrated_archive


@pytest.fixture
def archive(tmp_path, database_url):  # type: ignore[no-untyped-def]
    opened = migrated_archive(tmp_path / "data", database_url)
    yield opened
    opened.close()


def _scope(archive: Archive, principal: str = "tech") -> Scope:
    return full_scope(archive.default_tenant.id, principal)


def _default_source(archive: Archive) -> int:
    with archive.database.read() as conn:
        found = source_pk_by_name(conn, archive.default_tenant.id, "default")
    assert found is not None
    return found


def _instance(
    tmp: Path, study_uid: str, patient_id: str, accession: str = "", series_uid: str = ""
) -> Path:
    data = header_only_instance(
        {
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": series_uid or generate_uid(prefix=None),
            "SOPInstanceUID": generate_uid(prefix=None),
            "PatientID": patient_id,
            "PatientName": "DOE^JANE",
            "AccessionNumber": accession,
            "Modality": "CT",
        }
    )
    path = tmp / f"{generate_uid(prefix=None)}.dcm"
    path.write_bytes(data)
    return path


def _store(archive: Archive, path: Path) -> None:
    data = path.read_bytes()
    outcome = ingest_file(
        archive, _scope(archive), path, hashlib.sha256(data).hexdigest(), _default_source(archive)
    )
    assert outcome.stored, outcome.message


def _order(archive: Archive, accession: str, patient_id: str = "PAT-1") -> o.Order:
    with archive.database.write() as conn:
        order, created = o.create_order(
            conn, _scope(archive), {"accession_number": accession, "patient_id": patient_id}
        )
    assert created
    return order


def _status(archive: Archive, order_id: int) -> str:
    with archive.database.read() as conn:
        return o.get_order(conn, _scope(archive), order_id).status


def _history(archive: Archive, order_id: int) -> list[tuple[str | None, str]]:
    with archive.database.read() as conn:
        return [
            (h["from_status"], h["to_status"])
            for h in o.status_history(conn, _scope(archive), order_id)
        ]


def _feed(archive: Archive, kind: str | None = None) -> list[Change]:
    with archive.database.read() as conn:
        found = read_changes(conn, _scope(archive), 0, 1000)
    return [c for c in found if kind is None or c.kind == kind]


def test_reports_move_the_order_preliminary_final_and_addendum(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    order = _order(archive, "R1")
    other = _order(archive, "R2", "PAT-2")
    _store(archive, _instance(tmp_path, order.study_instance_uid, "PAT-1"))
    _store(archive, _instance(tmp_path, other.study_instance_uid, "PAT-2"))
    assert _status(archive, order.id) == "IN_PROGRESS"
    reader = _scope(archive, "dr.read")
    study = order.study_instance_uid

    draft = reports.create_report(archive, reader, study, {"sections": {"findings": "x"}})
    assert _status(archive, order.id) == "IN_PROGRESS"  # a draft moves nothing
    report_id = draft.report.id
    reports.edit_report(
        archive,
        reader,
        study,
        report_id,
        1,
        {"status": "PRELIMINARY", "sections": {"findings": "y"}},
    )
    assert _status(archive, order.id) == "REPORTED"
    reports.sign_report(archive, reader, study, report_id, 2)
    assert _status(archive, order.id) == "FINAL"
    reports.add_addendum(archive, reader, study, report_id, 3, {"text": "Also z."})
    assert _status(archive, order.id) == "FINAL"  # an addendum keeps FINAL
    # The other study's order is untouched.
    assert _status(archive, other.id) == "IN_PROGRESS"
    assert _history(archive, order.id) == [
        (None, "SCHEDULED"),
        ("SCHEDULED", "IN_PROGRESS"),
        ("IN_PROGRESS", "REPORTED"),
        ("REPORTED", "FINAL"),
    ]
    with archive.database.read() as conn:
        last = o.status_history(conn, _scope(archive), order.id)[-1]
    assert last["principal"] == "dr.read" and "signed" in last["reason"]

    moves = [
        (c.detail["from_status"], c.detail["order_status"])
        for c in _feed(archive, changes.ORDER_STATUS_CHANGED)
        if c.detail["order_id"] == order.id
    ]
    assert moves == [
        (None, "SCHEDULED"),
        ("SCHEDULED", "IN_PROGRESS"),
        ("IN_PROGRESS", "REPORTED"),
        ("REPORTED", "FINAL"),
    ]
    # The order's FINAL precedes the report.signed of the same transaction.
    kinds = [c.kind for c in _feed(archive) if c.study_instance_uid == study]
    final_at = max(i for i, k in enumerate(kinds) if k == changes.ORDER_STATUS_CHANGED)
    assert kinds[final_at + 1] == changes.REPORT_SIGNED


def test_signing_without_an_open_order_changes_no_order(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    order = _order(archive, "C1")
    _store(archive, _instance(tmp_path, order.study_instance_uid, "PAT-1"))
    with archive.database.write() as conn:
        o.change_status(conn, _scope(archive), order.id, "DISCONTINUED", "patient left")
    reader = _scope(archive, "dr.read")
    draft = reports.create_report(
        archive, reader, order.study_instance_uid, {"sections": {"findings": "x"}}
    )
    reports.sign_report(archive, reader, order.study_instance_uid, draft.report.id, 1)
    assert _status(archive, order.id) == "DISCONTINUED"


def test_committed_upload_session_completes_its_order_and_studies(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    order = _order(archive, "S1")
    scope = _scope(archive)
    session = sessions.open_session(archive, scope, "two studies")
    loose_study = generate_uid(prefix=None)
    files = [
        _instance(tmp_path, order.study_instance_uid, "PAT-1", "S1"),
        _instance(tmp_path, order.study_instance_uid, "PAT-1", "S1"),
        _instance(tmp_path, loose_study, "PAT-9"),
    ]
    for path in files:
        data = path.read_bytes()
        outcome = sessions.add_file(
            archive, scope, session.public_id, path, hashlib.sha256(data).hexdigest()
        )
        assert outcome.stored, outcome.message
    assert _status(archive, order.id) == "SCHEDULED"
    before = len(_feed(archive))

    result = sessions.commit(archive, scope, session.public_id)
    assert result.instances == 3
    assert _status(archive, order.id) == "IMAGES_READY"
    assert _history(archive, order.id) == [
        (None, "SCHEDULED"),
        ("SCHEDULED", "IN_PROGRESS"),
        ("IN_PROGRESS", "IMAGES_READY"),
    ]
    with archive.database.read() as conn:
        reason = o.status_history(conn, scope, order.id)[-1]["reason"]
    assert reason == f"upload session {session.public_id} committed"

    new = _feed(archive)[before:]
    committed = {
        c.study_instance_uid: c.detail for c in new if c.kind == "upload_session.committed"
    }
    assert committed == {
        order.study_instance_uid: {"upload_session": session.public_id, "instances": 2},
        loose_study: {"upload_session": session.public_id, "instances": 1},
    }
    complete = {
        c.study_instance_uid: c.detail["completed_by"] for c in new if c.kind == "study.complete"
    }
    assert complete == {order.study_instance_uid: "order", loose_study: "upload_session"}
    # Complete once: the worker's quiet pass later finds nothing more to say.
    time.sleep(2.2)
    archive.settings = archive.settings.__class__(
        **{**archive.settings.__dict__, "study_complete_quiet_seconds": 1}
    )
    run_once(archive)
    assert len(_feed(archive, "study.complete")) == 2


def test_commit_records_every_instance_stored(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    scope = _scope(archive)
    session = sessions.open_session(archive, scope)
    study, series = generate_uid(prefix=None), generate_uid(prefix=None)
    sops = []
    for _ in range(5):  # one series: the first recorded alone, four added in bulk
        path = _instance(tmp_path, study, "PAT-5", series_uid=series)
        data = path.read_bytes()
        outcome = sessions.add_file(
            archive, scope, session.public_id, path, hashlib.sha256(data).hexdigest()
        )
        sops.append(outcome.sop_instance_uid)
    sessions.commit(archive, scope, session.public_id)
    feed = _feed(archive)
    stored = [c for c in feed if c.kind == "instance.stored"]
    assert sorted(c.sop_instance_uid for c in stored) == sorted(sops)
    assert {(c.series_instance_uid, c.detail["modality"], c.source) for c in stored} == {
        (series, "CT", "default")
    }
    assert [c.seq for c in feed] == list(range(1, len(feed) + 1))
    assert [c.kind for c in feed].count("study.first_instance") == 1


def test_a_refused_commit_records_nothing(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    order = _order(archive, "S2")
    scope = _scope(archive)
    stored = _instance(tmp_path, order.study_instance_uid, "PAT-1", "S2")
    session = sessions.open_session(archive, scope)
    # The same SOP Instance UID with other bytes is stored directly first: a conflict.
    import pydicom

    ds = pydicom.dcmread(stored)
    ds.PatientName = "OTHER^NAME"
    clash = tmp_path / "clash.dcm"
    ds.save_as(clash)
    data = clash.read_bytes()
    assert sessions.add_file(
        archive, scope, session.public_id, clash, hashlib.sha256(data).hexdigest()
    ).stored
    _store(archive, stored)
    before = _feed(archive)
    history = _history(archive, order.id)
    with pytest.raises(sessions.SessionProblem):
        sessions.commit(archive, scope, session.public_id)
    assert _feed(archive) == before
    assert _history(archive, order.id) == history


def test_quiet_study_without_order_is_complete_once(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    loose = generate_uid(prefix=None)
    _store(archive, _instance(tmp_path, loose, "PAT-7"))
    ordered = _order(archive, "Q1")
    _store(archive, _instance(tmp_path, ordered.study_instance_uid, "PAT-1"))
    archive.settings = archive.settings.__class__(
        **{**archive.settings.__dict__, "study_complete_quiet_seconds": 3600}
    )
    run_once(archive)
    assert _feed(archive, "study.complete") == []
    time.sleep(2.2)
    archive.settings = archive.settings.__class__(
        **{**archive.settings.__dict__, "study_complete_quiet_seconds": 1}
    )
    run_once(archive)
    run_once(archive)
    complete = {c.study_instance_uid: c.detail for c in _feed(archive, "study.complete")}
    assert complete == {
        loose: {"completed_by": "quiet"},
        ordered.study_instance_uid: {
            "completed_by": "order",
            "order_id": ordered.id,
            "order_status": "IMAGES_READY",
        },
    }
    assert _status(archive, ordered.id) == "IMAGES_READY"
    # An instance arriving later is stored and shown; the study is not "complete" again.
    _store(archive, _instance(tmp_path, loose, "PAT-7"))
    time.sleep(2.2)
    run_once(archive)
    assert len(_feed(archive, "study.complete")) == 2


def test_rolled_back_order_change_leaves_no_event(archive) -> None:  # type: ignore[no-untyped-def]
    order = _order(archive, "B1")
    before = _feed(archive)
    with pytest.raises(RuntimeError), archive.database.write() as conn:
        o.cancel_order(conn, _scope(archive), order.id, "by mistake")
        raise RuntimeError("rolled back")
    assert _feed(archive) == before
    assert _status(archive, order.id) == "SCHEDULED"
    with archive.database.write() as conn:
        o.cancel_order(conn, _scope(archive), order.id, "really")
    [last] = _feed(archive)[len(before) :]
    assert (last.kind, last.detail["order_status"], last.detail["from_status"]) == (
        "order.status_changed",
        "CANCELLED",
        "SCHEDULED",
    )
    assert last.detail["reason"] == "really" and last.source == "default"
    # Gapless: the rolled-back transaction gave its number back.
    seqs = [c.seq for c in _feed(archive)]
    assert seqs == list(range(1, len(seqs) + 1))


def test_webhook_order_status_filter_sees_order_events(archive) -> None:  # type: ignore[no-untyped-def]
    order = _order(archive, "W1")
    with archive.database.write() as conn:
        o.cancel_order(conn, _scope(archive), order.id)
    subscription = Subscription(
        id=1,
        tenant_id=archive.default_tenant.id,
        url="https://ris.example.org/",
        description="",
        event_types=("order.status_changed",),
        modalities=(),
        order_statuses=("CANCELLED",),
        sources=(),
        source_pks=frozenset(),
        enabled=True,
        last_seq=0,
        created_by="admin",
        created_at=datetime.now(UTC),
    )
    matched = [c.detail["order_status"] for c in _feed(archive) if subscription.matches(c)]
    assert matched == ["CANCELLED"]


def test_another_tenants_feed_never_shows_the_order(archive) -> None:  # type: ignore[no-untyped-def]
    from tessera.index.tenancy import create_tenant

    with archive.database.write() as conn:
        other = create_tenant(conn, "other")
    order = _order(archive, "T1")
    with archive.database.write() as conn:
        o.cancel_order(conn, _scope(archive), order.id)
    with archive.database.read() as conn:
        assert read_changes(conn, full_scope(other.id), 0, 100) == []
