"""UPS SCP Status Change (Event Type 4, PS3.4 Table CC.2.4-1) over a real `tessera serve` and
real WebSockets, on SQLite and PostgreSQL: the first channel of an AE on a started server is
told RESTARTED (WARM START: its subscriptions and the workitems were kept), a graceful
shutdown (SIGTERM) sends GOING DOWN to every open channel before closing it (1001), and after
the restart the AE's subscriptions still report without subscribing again. An AE is an AE of
one tenant: the same AE title in another tenant is told on its own."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.security_world import World
from tests.test_ups_rs import Ups
from tests.test_ups_subscriptions import (
    Channel,
    about,
    acme_workitem,
    first,
    subscribe,
    uids,
    workitem,
)
from tests.world import DATABASES, add_user, served_world

WORKLIST = "1.2.840.10008.5.1.4.34.5"
UPS_EVENT_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.4"
SCP_STATUS_CHANGE = 4


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    # One worker process: which channel is an AE's first on the process is then certain.
    env = {"TESSERA_WORKERS": "1"}
    with served_world(request.param, tmp_path_factory, "ups-status", env) as built:
        add_user(built, "tech_b", "technologist", ["ClinicB"], upload_sources=["ClinicB"])
        yield built


def status_change(report: dict) -> bool:
    return first(report, "00001002") == SCP_STATUS_CHANGE


def assert_status(report: dict, status: str) -> None:
    assert first(report, "00000002") == UPS_EVENT_SOP_CLASS
    assert first(report, "00001002") == SCP_STATUS_CHANGE
    # About the server, not a workitem: the well-known UID of the global subscription.
    assert first(report, "00001000") == WORKLIST
    assert first(report, "00741242") == status
    if status == "RESTARTED":
        assert first(report, "00741244") == "WARM START"
        assert first(report, "00741246") == "WARM START"
    else:
        assert "00741244" not in report and "00741246" not in report
    assert "00741000" not in report  # no Procedure Step State: no workitem is named


def next_report(channel: Channel) -> dict:
    report = json.loads(channel.ws.recv(timeout=30))
    channel.seen.append(report)
    return report


def test_restart_and_going_down_reach_every_channel(world: World) -> None:
    _, uid = workitem(world, "STATUS1", source="ClinicB")
    admin = Channel(world, "admin", "STATUS1")
    acme = Channel(world, "acme_admin", "STATUS1", tenant="acme")
    locked = Channel(world, "tech_b", "LOCKED1")
    second = Channel(world, "admin", "STATUS1")
    channels = [admin, acme, locked, second]
    try:
        # The first channel of each AE on the started server: RESTARTED, Message ID 1.
        for channel in (admin, acme, locked):
            report = next_report(channel)
            assert_status(report, "RESTARTED")
            assert first(report, "00000110") == 1
        # A second channel of the same AE is not told again: its first report is the
        # subscription's.
        assert subscribe(world, uid, "STATUS1").status_code == 201
        report = next_report(second)
        assert not status_change(report) and first(report, "00001000") == uid
        assert about(uid, "SCHEDULED")(admin.until(about(uid))[-1])
        assert subscribe(world, WORKLIST, "LOCKED1", user="tech_b").status_code == 201
        locked.until(about(uid, "SCHEDULED"))
        # A graceful shutdown: every open channel, of every tenant, hears GOING DOWN last,
        # then the server closes it with 1001 (Going Away).
        world.server.stop()
        for channel in channels:
            got = channel.until(status_change)
            assert_status(got[-1], "GOING DOWN")
            numbers = [first(r, "00000110") for r in channel.seen]
            assert numbers == list(range(1, len(numbers) + 1)), numbers
            with pytest.raises(ConnectionClosed) as closed:
                channel.ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    finally:
        for channel in channels:
            channel.close()
    # Restarted on the same data: RESTARTED again, and the subscription made before the
    # shutdown still reports (WARM START), with nothing subscribed anew.
    world.server.start(timeout=120)
    admin = Channel(world, "admin", "STATUS1")
    acme = Channel(world, "acme_admin", "STATUS1", tenant="acme")
    try:
        assert_status(next_report(admin), "RESTARTED")
        assert_status(next_report(acme), "RESTARTED")
        claimed = Ups(world, "admin").state(uid, "IN PROGRESS", "1.2.826.0.1.3680043.10.1.140")
        assert claimed.status_code == 200, claimed.text
        admin.until(about(uid, "IN PROGRESS"))
        # The other tenant's AE of the same title hears only of its own tenant's workitems.
        assert (
            subscribe(world, WORKLIST, "STATUS1", user="acme_admin", tenant="acme").status_code
            == 201
        )
        acme_uid = acme_workitem(world, "ACMESTATUS1", "P1")
        received = acme.until(about(acme_uid, "SCHEDULED"))
        assert uid not in uids(received)
    finally:
        admin.close()
        acme.close()
