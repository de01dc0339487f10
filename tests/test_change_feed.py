"""The change feed against real server processes (SQLite and PostgreSQL): what ingest
records, gapless commit order under concurrent writers, resuming, long-polling, bad input."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from tessera.index import changes
from tessera.index.database import Database
from tessera.index.migrate import upgrade_to_head
from tessera.index.tenancy import ensure_default_tenant
from tessera.synthetic import StudySpec
from tests.conftest import PG_URL, ServerProcess, create_pg_database, drop_pg_database
from tests.events_support import (
    START_TIMEOUT,
    ct_study,
    read_feed,
    read_whole_feed,
    stow_parts,
)


@pytest.fixture
def one_worker_server(server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A running server with one HTTP worker, on SQLite and on PostgreSQL."""
    return server_factory(env_extra={"TESSERA_WORKERS": "1"}).start(timeout=START_TIMEOUT)


def test_ingest_records_study_first_instance_then_each_instance(one_worker_server) -> None:  # type: ignore[no-untyped-def]
    spec = StudySpec()
    parts = ct_study(3, spec)
    stow_parts(one_worker_server.dicomweb, parts[:2])
    stow_parts(one_worker_server.dicomweb, parts[2:])
    stow_parts(one_worker_server.dicomweb, parts[:1])  # identical resend: no new change

    feed = read_whole_feed(one_worker_server)
    assert [c["seq"] for c in feed] == [1, 2, 3, 4]
    assert [c["type"] for c in feed] == [
        "study.first_instance",
        "instance.stored",
        "instance.stored",
        "instance.stored",
    ]
    assert {c["study_instance_uid"] for c in feed} == {spec.study_instance_uid}
    assert feed[1]["detail"]["modality"] == "CT"
    assert feed[1]["source"] == "default"
    assert len({c["sop_instance_uid"] for c in feed[1:]}) == 3

    page = read_feed(one_worker_server, after=2, limit=1)
    assert [c["seq"] for c in page["changes"]] == [3] and page["next"] == 3
    assert read_feed(one_worker_server, after=4) == {"changes": [], "next": 4}
    only = read_feed(one_worker_server, type="study.first_instance")["changes"]
    assert [c["seq"] for c in only] == [1]


def test_long_poll_answers_when_a_change_commits(one_worker_server) -> None:  # type: ignore[no-untyped-def]
    stow_parts(one_worker_server.dicomweb, ct_study(1))
    results: dict = {}

    def poll() -> None:
        started = time.monotonic()
        results["page"] = read_feed(one_worker_server, after=2, wait=30)
        results["answered_at"] = time.monotonic()
        results["held"] = results["answered_at"] - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1.5)
    assert "page" not in results  # held while nothing happens
    stow_parts(one_worker_server.dicomweb, ct_study(1))
    committed_at = time.monotonic()
    poller.join(30)
    assert [c["type"] for c in results["page"]["changes"]] == [
        "study.first_instance",
        "instance.stored",
    ]
    assert results["held"] >= 1.5
    # Visible soon after the STOW-RS response (the watcher polls every 50 ms).
    assert results["answered_at"] - committed_at < 3.0

    started = time.monotonic()
    assert read_feed(one_worker_server, after=4, wait=1)["changes"] == []
    assert 0.9 <= time.monotonic() - started < 5


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("feed")
    server = ServerProcess(
        data_dir=base / "data", database_url=f"sqlite:///{base / 'index.sqlite3'}"
    ).start(timeout=START_TIMEOUT)
    yield server
    server.stop()


@pytest.mark.parametrize(
    "params,named",
    [
        ({"after": "x"}, "after"),
        ({"after": "-1"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
        ({"wait": "61"}, "wait"),
        ({"type": "study.exploded"}, "study.exploded"),
    ],
)
def test_bad_parameters_are_400_naming_them(sqlite_server, params, named) -> None:  # type: ignore[no-untyped-def]
    response = httpx.get(f"{sqlite_server.base_url}/api/v1/changes", params=params, timeout=10)
    assert response.status_code == 400
    assert named in response.json()["detail"]


def test_rolled_back_change_leaves_no_gap(database_url) -> None:  # type: ignore[no-untyped-def]
    database = Database(database_url)
    try:
        upgrade_to_head(database.engine)
        with database.write() as conn:
            tenant = ensure_default_tenant(conn)
        with database.write() as conn:
            assert changes.record_change(conn, tenant.id, None, changes.STUDY_UPDATED, "1.2") == 1
        with pytest.raises(RuntimeError), database.write() as conn:
            assert changes.record_change(conn, tenant.id, None, changes.STUDY_UPDATED, "1.3") == 2
            raise RuntimeError("the change failed")
        with database.write() as conn:
            assert changes.record_change(conn, tenant.id, None, changes.STUDY_UPDATED, "1.4") == 2
        with database.read() as conn:
            rows = conn.execute(text("SELECT seq, study_instance_uid FROM change_event")).all()
        assert sorted(rows) == [(1, "1.2"), (2, "1.4")]
        with pytest.raises(ValueError), database.write() as conn:
            changes.record_change(conn, tenant.id, None, "study.exploded")
    finally:
        database.dispose()


@pytest.mark.postgres
def test_gapless_in_commit_order_under_concurrent_ingest_on_postgresql(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Several writer threads STOW into two HTTP worker processes at once while a reader
    follows the feed with after=next: the reader ends with every change exactly once, in
    sequence order, numbered 1..N without a gap."""
    if not PG_URL:
        pytest.skip("TESSERA_TEST_PG_URL not set")
    url = create_pg_database()
    server = ServerProcess(
        data_dir=tmp_path / "data", database_url=url, env_extra={"TESSERA_WORKERS": "2"}
    ).start(timeout=START_TIMEOUT)
    try:
        writers, studies_per_writer, instances_per_study = 6, 4, 5
        shared = StudySpec()  # every writer also adds to one shared study (row lock contention)
        done = threading.Event()
        seen: list[dict] = []

        def follow() -> None:
            after = 0
            while True:
                finished = done.is_set()
                page = read_feed(server, after, limit=7, wait=1)
                seen.extend(page["changes"])
                after = page["next"]
                if finished and not page["changes"]:
                    return

        def write(writer: int) -> None:
            for _ in range(studies_per_writer):
                for part in ct_study(instances_per_study):
                    stow_parts(server.dicomweb, [part])
            stow_parts(server.dicomweb, ct_study(1, shared))

        reader = threading.Thread(target=follow)
        reader.start()
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(write, range(writers)))
        done.set()
        reader.join(120)

        instances = writers * (studies_per_writer * instances_per_study + 1)
        studies = writers * studies_per_writer + 1
        assert len(seen) == instances + studies
        assert [c["seq"] for c in seen] == list(range(1, instances + studies + 1))
        assert sum(c["type"] == "instance.stored" for c in seen) == instances
        # Per study, "first instance" comes before any of its instances.
        first_at = {
            c["study_instance_uid"]: c["seq"] for c in seen if c["type"] == "study.first_instance"
        }
        assert len(first_at) == studies
        for change in seen:
            if change["type"] == "instance.stored":
                assert change["seq"] > first_at[change["study_instance_uid"]]
    finally:
        server.stop()
        drop_pg_database(url)
