"""kill -9 of the routing worker mid-delivery: nothing is lost, and the destination (a second
real Tessera) ends with every instance exactly once."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import create_engine, text

from tessera.synthetic import StudySpec
from tests.conftest import ServerProcess, index_rows
from tests.events_support import START_TIMEOUT, ct_study, read_whole_feed, stow_parts
from tests.test_routing import ROUTING_ENV, add_route, api, instance_count, wait_backlog


def test_kill_9_mid_delivery_loses_nothing_and_duplicates_nothing(server_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The source runs on the test's database (SQLite or PostgreSQL), with two worker
    # processes sharing the deliveries; the destination is another archive on its own SQLite.
    destination = ServerProcess(
        data_dir=tmp_path / "destination",
        database_url=f"sqlite:///{tmp_path / 'destination.sqlite3'}",
        env_extra={"TESSERA_WORKERS": "1"},
    ).start(timeout=START_TIMEOUT)
    try:
        _kill_and_resume(server_factory, destination)
    finally:
        destination.stop()


def _kill_and_resume(server_factory, destination: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    source = server_factory(
        env_extra={**ROUTING_ENV, "TESSERA_WORKERS": "2", "TESSERA_DELIVERY_LEASE_SECONDS": "5"}
    ).start(timeout=START_TIMEOUT)
    spec = StudySpec()
    parts = ct_study(40, spec, size=256)
    for start in range(0, 40, 8):
        stow_parts(source.dicomweb, parts[start : start + 8])
    add_route(source, name="mirror", destination={"kind": "dicomweb", "url": destination.dicomweb})
    queued = httpx.post(
        f"{api(source)}/routes/mirror/send",
        json={"study_instance_uid": spec.study_instance_uid},
        timeout=30,
    )
    assert queued.json() == {"queued": 40}
    # Kill while a batch is claimed (leased: its next attempt pushed ahead) but not recorded.
    engine = create_engine(source.database_url)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT next_attempt_at, created_at FROM route_delivery WHERE status = 'pending'"
                    )
                ).all()
            if any(row.next_attempt_at != row.created_at for row in rows):
                break
            time.sleep(0.005)
    finally:
        engine.dispose()
    source.kill()  # SIGKILL, supervisor and workers
    leased = index_rows(
        source.database_url,
        "SELECT count(*) FROM route_delivery WHERE status = 'pending' AND attempts = 0",
    )[0][0]
    delivered_before = index_rows(
        source.database_url, "SELECT count(*) FROM route_delivery WHERE status = 'delivered'"
    )[0][0]
    assert delivered_before < 40, "everything was sent before the kill: nothing was tested"
    assert leased + delivered_before <= 40

    source.start(timeout=START_TIMEOUT)
    wait_backlog(source, "mirror", 40, timeout=120)
    assert instance_count(destination) == 40
    stored = [c for c in read_whole_feed(destination) if c["type"] == "instance.stored"]
    assert len(stored) == 40  # each instance stored once; resends were identical, not new
    assert len({c["sop_instance_uid"] for c in stored}) == 40
