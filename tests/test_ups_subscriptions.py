"""UPS-RS subscriptions and event reports (PS3.18 §11.10-11.13) over real HTTP and real
WebSockets (`tessera serve` with two worker processes, SQLite and PostgreSQL; the
`websockets` client): a subscriber's channel gets the UPS State Report when the workitem's
state changes, whether over UPS-RS or through its order over the REST API, and whichever
worker process made the change; global and filtered subscriptions take in new workitems;
unsubscribe and suspend stop them; a source-locked user and another tenant hear nothing of
workitems they cannot see; bad requests are a 4xx naming the problem."""

# `world` (the server, its users and tenants) is test_ups_rs's module fixture, shared here.
# ruff: noqa: F811
from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerProcess
from tests.security_world import World
from tests.test_ups_rs import Ups, accession_of, rest_order, uid_of, world  # noqa: F401
from tests.world import post_order

WORKLIST = "1.2.840.10008.5.1.4.34.5"
FILTERED = "1.2.840.10008.5.1.4.34.5.1"
UPS_EVENT_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.4"


def first(report: dict, tag: str) -> object:
    return (report.get(tag, {}).get("Value") or [None])[0]


class Channel:
    """An open notification channel (Open Notification Connection, PS3.18 §8.10.4)."""

    def __init__(
        self, world: World, user: str, ae: str, tenant: str = "default", root: str = ""
    ) -> None:
        root = root or world.url(tenant)
        self.url = root.replace("http://", "ws://") + f"/subscribers/{ae}"
        self.ws: ClientConnection = connect(
            self.url, additional_headers=world.auth(user), open_timeout=30
        ).__enter__()
        self.seen: list[dict] = []

    def until(self, wanted: Callable[[dict], bool], timeout: float = 30) -> list[dict]:
        """Every report received up to and including the first one `wanted` accepts."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no report wanted; received {got}"
            report = json.loads(self.ws.recv(timeout=remaining))
            got.append(report)
            self.seen.append(report)
            if wanted(report):
                return got

    def close(self) -> None:
        self.ws.close()


def about(uid: str, state: str | None = None, event: int = 1) -> Callable[[dict], bool]:
    def wanted(report: dict) -> bool:
        return (
            first(report, "00001000") == uid
            and first(report, "00001002") == event
            and (state is None or first(report, "00741000") == state)
        )

    return wanted


def uids(reports: list[dict]) -> set[str]:
    return {str(first(report, "00001000")) for report in reports}


def workitem(world: World, accession: str, user: str = "admin", **kwargs: str) -> tuple[dict, str]:
    """A new order over REST and the UID of its one workitem."""
    order = rest_order(world, accession, user=user, **kwargs)
    found = Ups(world, "admin").found(AccessionNumber=accession)
    assert [accession_of(item) for item in found] == [accession]
    return order, uid_of(found[0])


def acme_workitem(world: World, accession: str, patient_id: str) -> str:
    """A new order of the other tenant (`acme`) with one step, and its workitem's UID."""
    step = {"scheduled_procedure_step_id": "S1", "modality": "CT", "start": "2026-12-01"}
    body = {
        "accession_number": accession,
        "patient_id": patient_id,
        "scheduled_procedure_steps": [step],
    }
    post_order(world, body, user="acme_admin", tenant="acme")
    found = Ups(world, "acme_admin", tenant="acme").found(AccessionNumber=accession)
    assert len(found) == 1, found
    return uid_of(found[0])


def subscribe(
    world: World,
    resource: str,
    ae: str,
    user: str = "admin",
    tenant: str = "default",
    **params: str,
) -> httpx.Response:
    return httpx.post(
        f"{world.url(tenant)}/workitems/{resource}/subscribers/{ae}",
        params=params,
        headers=world.auth(user),
        timeout=30,
    )


def unsubscribe(world: World, resource: str, ae: str, user: str = "admin") -> httpx.Response:
    return httpx.delete(
        f"{world.url()}/workitems/{resource}/subscribers/{ae}", headers=world.auth(user), timeout=30
    )


def cancel_order(world: World, order_id: int, reason: str) -> None:
    response = httpx.post(
        f"{world.api()}/orders/{order_id}/cancel",
        json={"reason": reason},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_workitem_subscription_reports_every_state_change(world: World) -> None:
    order, uid = workitem(world, "SUB1")
    channel = Channel(world, "admin", "WATCHER1")
    try:
        response = subscribe(world, uid, "WATCHER1", deletionlock="true")
        assert response.status_code == 201, response.text
        # The initial UPS State Report of the new subscription.
        report = channel.until(about(uid))[-1]
        assert first(report, "00000002") == UPS_EVENT_SOP_CLASS
        assert first(report, "00741000") == "SCHEDULED"
        assert first(report, "00404041") == "READY"
        assert isinstance(first(report, "00000110"), int)
        # Claimed over UPS-RS: IN PROGRESS.
        ups = Ups(world, "admin")
        claimed = ups.state(uid, "IN PROGRESS", "1.2.826.0.1.3680043.10.1.77")
        assert claimed.status_code == 200, claimed.text
        channel.until(about(uid, "IN PROGRESS"))
        # Cancelled through its order over the REST API: CANCELED, with the reason.
        cancel_order(world, order["id"], "patient left")
        report = channel.until(about(uid, "CANCELED"))[-1]
        assert first(report, "00741238") == "patient left"
    finally:
        channel.close()


def test_a_server_that_did_not_make_the_change_reports_it(
    world: World, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    """Two `tessera serve` nodes over one PostgreSQL index: the channel is open on the
    second, every change is made through the first."""
    if "postgresql" not in request.node.name:
        pytest.skip("several servers share one index on PostgreSQL")
    node = ServerProcess(
        data_dir=tmp_path_factory.mktemp("second-node"),
        database_url=world.server.database_url,
        env_extra={"TESSERA_ANONYMOUS": "off", "TESSERA_WORKERS": "1"},
    )
    node.start(timeout=180)
    try:
        order, uid = workitem(world, "NODE1")
        channel = Channel(world, "admin", "NODE2", root=f"{node.base_url}/dicomweb")
        try:
            assert subscribe(world, uid, "NODE2").status_code == 201
            channel.until(about(uid, "SCHEDULED"))
            cancel_order(world, order["id"], "made on the first node")
            channel.until(about(uid, "CANCELED"))
        finally:
            channel.close()
    finally:
        node.stop()


def test_cancel_request_reaches_the_subscribed_performer(world: World) -> None:
    _, uid = workitem(world, "SUB2")
    ups = Ups(world, "admin")
    assert ups.state(uid, "IN PROGRESS", "1.2.826.0.1.3680043.10.1.78").status_code == 200
    # Nobody subscribed: nobody could pass the request on.
    refused = ups.cancel(uid, "wrong patient")
    assert refused.status_code == 409, refused.text
    assert "no AE is subscribed" in refused.json()["detail"]
    channel = Channel(world, "admin", "PERFORMER")
    try:
        assert subscribe(world, uid, "PERFORMER").status_code == 201
        channel.until(about(uid, "IN PROGRESS"))
        accepted = ups.cancel(uid, "wrong patient")
        assert accepted.status_code == 202, accepted.text
        report = channel.until(about(uid, event=2))[-1]
        assert first(report, "00741238") == "wrong patient"
        assert first(report, "00741236") == "admin (key 1)"[:16]
        # The request changed nothing: the performer decides.
        assert first(ups.get(uid).json()[0], "00741000") == "IN PROGRESS"
    finally:
        channel.close()


def test_global_and_filtered_subscriptions_take_in_new_workitems(world: World) -> None:
    _, before = workitem(world, "SUB3", station="CT9")
    everything = Channel(world, "admin", "GLOBAL1")
    filtered = Channel(world, "admin", "FILTER1")
    try:
        assert subscribe(world, WORKLIST, "GLOBAL1").status_code == 201
        assert everything.until(about(before, "SCHEDULED"))  # existing open workitems
        response = subscribe(world, FILTERED, "FILTER1", filter="ScheduledStationAETitle=CT9")
        assert response.status_code == 201, response.text
        assert filtered.until(about(before, "SCHEDULED"))
        _, other = workitem(world, "SUB4", station="CT8")
        _, match = workitem(world, "SUB5", station="CT9")
        assert other in uids(everything.until(about(match, "SCHEDULED")))
        received = filtered.until(about(match, "SCHEDULED"))
        assert other not in uids(received)
        states = {first(r, "00741000") for r in filtered.seen if first(r, "00001002") == 1}
        assert states <= {"SCHEDULED", "IN PROGRESS"}
        # Unsubscribing from one workitem under a global subscription: that one goes quiet.
        assert unsubscribe(world, match, "GLOBAL1").status_code == 200
        ups = Ups(world, "admin")
        assert ups.state(match, "IN PROGRESS", "1.2.826.0.1.3680043.10.1.79").status_code == 200
        assert ups.state(other, "IN PROGRESS", "1.2.826.0.1.3680043.10.1.80").status_code == 200
        received = everything.until(about(other, "IN PROGRESS"))
        assert match not in uids(received)
        assert filtered.until(about(match, "IN PROGRESS"))
        # Suspended: no new workitems; those it held stay subscribed.
        suspend = httpx.post(
            f"{world.url()}/workitems/{WORKLIST}/subscribers/GLOBAL1/suspend",
            headers=world.auth("admin"),
        )
        assert suspend.status_code == 200, suspend.text
        _, later = workitem(world, "SUB6", station="CT9")
        cancel = ups.state(other, "CANCELED", "1.2.826.0.1.3680043.10.1.80")
        assert cancel.status_code == 200, cancel.text
        received = everything.until(about(other, "CANCELED"))
        assert later not in uids(received)
        # Unsubscribing from the worklist ends every subscription of the AE.
        assert unsubscribe(world, WORKLIST, "GLOBAL1").status_code == 200
        assert unsubscribe(world, FILTERED, "FILTER1").status_code == 200
        assert unsubscribe(world, WORKLIST, "GLOBAL1").status_code == 404
    finally:
        everything.close()
        filtered.close()


def test_unsubscribe_stops_events(world: World) -> None:
    _, quiet = workitem(world, "SUB7")
    _, marker = workitem(world, "SUB8")
    channel = Channel(world, "admin", "LEAVER")
    try:
        assert subscribe(world, quiet, "LEAVER").status_code == 201
        channel.until(about(quiet, "SCHEDULED"))
        assert unsubscribe(world, quiet, "LEAVER").status_code == 200
        assert unsubscribe(world, quiet, "LEAVER").status_code == 404
        ups = Ups(world, "admin")
        assert ups.state(quiet, "IN PROGRESS", "1.2.826.0.1.3680043.10.1.81").status_code == 200
        # A later event (a new subscription's report) arrives; nothing about `quiet` before it.
        assert subscribe(world, marker, "LEAVER").status_code == 201
        assert quiet not in uids(channel.until(about(marker)))
    finally:
        channel.close()


def test_a_channel_on_another_tenant_or_source_hears_nothing_hidden(world: World) -> None:
    locked = Channel(world, "tech_b", "LOCKED1")
    acme = Channel(world, "acme_admin", "LOCKED1", tenant="acme")
    try:
        _, hidden = workitem(world, "SUB9", source="ClinicA")
        # tech_b sees only ClinicB: a ClinicA workitem is "no workitem".
        response = subscribe(world, hidden, "LOCKED1", user="tech_b")
        assert response.status_code == 404, response.text
        assert subscribe(world, WORKLIST, "LOCKED1", user="tech_b").status_code == 201
        assert (
            subscribe(world, WORKLIST, "LOCKED1", user="acme_admin", tenant="acme").status_code
            == 201
        )
        # The same AE title subscribed by an admin of the tenant: still only what tech_b sees.
        assert subscribe(world, hidden, "LOCKED1").status_code == 201
        _, also_hidden = workitem(world, "SUB10", source="ClinicA")
        Ups(world, "admin").state(hidden, "IN PROGRESS", "1.2.826.0.1.3680043.10.1.82")
        _, visible = workitem(world, "SUB11", source="ClinicB")
        received = locked.until(about(visible, "SCHEDULED"))
        clinic_a = {
            uid_of(item)
            for item in Ups(world, "admin").found(ProcedureStepState="SCHEDULED,IN PROGRESS")
            if uid_of(item) not in {uid_of(i) for i in Ups(world, "tech_b").found()}
        }
        assert clinic_a and not (uids(received) & (clinic_a | {hidden, also_hidden}))
        # The other tenant: its own workitem only.
        order = httpx.post(
            f"{world.api('acme')}/orders",
            json={"accession_number": "ACME1", "patient_id": "P1", "patient_name": "Acme^Ann"},
            headers=world.auth("acme_admin"),
        )
        assert order.status_code == 201, order.text
        acme_items = Ups(world, "acme_admin", tenant="acme").found(AccessionNumber="ACME1")
        assert acme_items == []  # an order without steps is no workitem
        acme_uid = acme_workitem(world, "ACME2", "P2")
        received = acme.until(about(acme_uid, "SCHEDULED"))
        default_uids = {uid_of(item) for item in Ups(world, "admin").found()}
        assert not (uids(received) & default_uids)
    finally:
        locked.close()
        acme.close()


def test_the_channel_authenticates_like_any_request(world: World) -> None:
    url = world.url().replace("http://", "ws://") + "/subscribers/ANYONE"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=30)
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=world.auth("nobody"), open_timeout=30)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=["dicomweb", "bearer.not-a-key"], open_timeout=30)  # type: ignore[list-item]
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        connect(
            url.replace("ANYONE", "A" * 17), additional_headers=world.auth("admin"), open_timeout=30
        )
    assert refused.value.response.status_code == 400
    # A browser cannot set headers: the token as a subprotocol, answered with `dicomweb`.
    key = world.keys["admin"]
    with connect(url, subprotocols=["dicomweb", f"bearer.{key}"], open_timeout=30) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "dicomweb"
        _, uid = workitem(world, "SUB12")
        assert subscribe(world, uid, "ANYONE").status_code == 201
        report = json.loads(ws.recv(timeout=30))
        if first(report, "00001002") == 4:  # SCP Status Change: the AE's first channel
            assert first(report, "00741242") == "RESTARTED"
            report = json.loads(ws.recv(timeout=30))
        assert first(report, "00001000") == uid


@pytest.mark.parametrize(
    ("path", "params", "status", "named"),
    [
        ("{uid}/subscribers/" + "A" * 17, {}, 400, "at most 16"),
        ("{uid}/subscribers/%20%20", {}, 400, "AE title"),
        ("{uid}/subscribers/BAD%5CAE", {}, 400, "backslash"),
        ("1.2.3.999999/subscribers/WATCHER", {}, 404, "no workitem"),
        ("not-a-uid/subscribers/WATCHER", {}, 404, "no workitem"),
        ("{uid}/subscribers/WATCHER", {"deletionlock": "maybe"}, 400, "deletionlock"),
        ("{uid}/subscribers/WATCHER", {"Modality": "CT"}, 400, "Filtered Worklist"),
        (f"{FILTERED}/subscribers/WATCHER", {}, 400, "needs matching keys"),
        (f"{FILTERED}/subscribers/WATCHER", {"filter": "NoSuchKey=1"}, 400, "NoSuchKey"),
        (f"{FILTERED}/subscribers/WATCHER", {"filter": "CT"}, 400, "attribute=value"),
        (
            f"{FILTERED}/subscribers/WATCHER",
            {"filter": "ScheduledProcedureStepStartDateTime=yesterday"},
            400,
            "ScheduledProcedureStepStartDateTime",
        ),
    ],
)
def test_bad_subscriptions_are_a_4xx_naming_the_problem(
    world: World, path: str, params: dict, status: int, named: str
) -> None:
    found = Ups(world, "admin").found()
    path = path.format(uid=uid_of(found[0]) if found else "1.2.3")
    response = httpx.post(
        f"{world.url()}/workitems/{path}", params=params, headers=world.auth("admin")
    )
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]
    assert "Warning" in response.headers


def test_bad_unsubscribe_and_suspend(world: World) -> None:
    _, uid = workitem(world, "SUB13")
    headers = world.auth("admin")
    root = f"{world.url()}/workitems"
    assert httpx.delete(f"{root}/{uid}/subscribers/NOBODY", headers=headers).status_code == 404
    response = httpx.post(f"{root}/{uid}/subscribers/NOBODY/suspend", headers=headers)
    assert response.status_code == 400 and "global subscription" in response.json()["detail"]
    response = httpx.post(f"{root}/{WORKLIST}/subscribers/NOBODY/suspend", headers=headers)
    assert response.status_code == 404, response.text
    # Watching is reading: a user without `read` is refused at the gate.
    denied = httpx.post(f"{root}/{WORKLIST}/subscribers/X", headers=world.auth("nobody"))
    assert denied.status_code == 403


def _progress(percent: str, description: str) -> dict:
    item = {
        "00741004": {"vr": "DS", "Value": [percent]},
        "00741006": {"vr": "ST", "Value": [description]},
    }
    return {"00741002": {"vr": "SQ", "Value": [item]}}


def _assignment(station: str, performer: str) -> dict:
    code = {
        "00080100": {"vr": "SH", "Value": [station]},
        "00080102": {"vr": "SH", "Value": ["99TESSERA"]},
        "00080104": {"vr": "LO", "Value": [station]},
    }
    human = {"00404037": {"vr": "PN", "Value": [{"Alphabetic": performer}]}}
    return {
        "00404025": {"vr": "SQ", "Value": [code]},
        "00404034": {"vr": "SQ", "Value": [human]},
    }


def _progress_of(report: dict) -> tuple[object, object]:
    item = first(report, "00741002")
    assert isinstance(item, dict), report
    return first(item, "00741004"), first(item, "00741006")


def test_assignment_and_progress_reach_the_subscriber(world: World) -> None:
    """UPS Assigned (5) when a station or performer is set, UPS Progress Report (3) when
    the performer's progress changes (PS3.4 CC.2.4.2); progress shows in the workitem."""
    order, uid = workitem(world, "SUB20")
    ups = Ups(world, "admin")
    channel = Channel(world, "admin", "WATCHER20")
    try:
        assert subscribe(world, uid, "WATCHER20").status_code == 201
        channel.until(about(uid, "SCHEDULED"))
        # Assigned over UPS-RS (Update Workitem while SCHEDULED).
        assert ups.update(uid, _assignment("CT9", "Tech^Tina")).status_code == 200
        report = channel.until(about(uid, event=5))[-1]
        assert first(first(report, "00404025"), "00080100") == "CT9"  # type: ignore[arg-type]
        performer = first(first(report, "00404034"), "00404037")  # type: ignore[arg-type]
        assert performer == {"Alphabetic": "Tech^Tina"}
        # ...and through the order over the REST API.
        step = {**order["scheduled_procedure_steps"][0], "scheduled_station_ae_title": "CT7"}
        changed = httpx.patch(
            f"{world.api()}/orders/{order['id']}",
            json={"scheduled_procedure_steps": [step]},
            headers=world.auth("admin"),
            timeout=30,
        )
        assert changed.status_code == 200, changed.text
        report = channel.until(about(uid, event=5))[-1]
        assert first(first(report, "00404025"), "00080100") == "CT7"  # type: ignore[arg-type]
        # Progress is its performer's, once IN PROGRESS.
        early = ups.update(uid, _progress("10", "too early"))
        assert early.status_code == 409, early.text
        transaction = "1.2.826.0.1.3680043.10.1.120"
        assert ups.state(uid, "IN PROGRESS", transaction).status_code == 200
        channel.until(about(uid, "IN PROGRESS"))
        assert ups.update(uid, _progress("40", "series 2 of 5"), transaction).status_code == 200
        report = channel.until(about(uid, event=3))[-1]
        assert _progress_of(report) == (40, "series 2 of 5")
        # The same progress again is no change; the next one is reported.
        assert ups.update(uid, _progress("40", "series 2 of 5"), transaction).status_code == 200
        assert ups.update(uid, _progress("62.5", "series 4 of 5"), transaction).status_code == 200
        got = channel.until(about(uid, event=3))
        assert [_progress_of(r) for r in got if first(r, "00001002") == 3] == [
            (62.5, "series 4 of 5")
        ]
        shown = ups.get(uid).json()[0]
        assert _progress_of(shown) == (62.5, "series 4 of 5")
        # Not the owner, or not a percentage: refused, nothing reported.
        wrong = ups.update(uid, _progress("70", "x"), "1.2.826.0.1.3680043.10.1.121")
        assert wrong.status_code == 400, wrong.text
        too_much = ups.update(uid, _progress("150", "x"), transaction)
        assert too_much.status_code == 400, too_much.text
        assert "0074,1004" in too_much.json()["detail"]
    finally:
        channel.close()


def test_progress_and_assignment_stay_with_those_who_see_the_workitem(world: World) -> None:
    locked = Channel(world, "tech_b", "LOCKED20")
    acme = Channel(world, "acme_admin", "LOCKED20", tenant="acme")
    try:
        assert subscribe(world, WORKLIST, "LOCKED20", user="tech_b").status_code == 201
        assert (
            subscribe(world, WORKLIST, "LOCKED20", user="acme_admin", tenant="acme").status_code
            == 201
        )
        _, hidden = workitem(world, "SUB21", source="ClinicA")
        ups = Ups(world, "admin")
        assert ups.update(hidden, _assignment("CT8", "Hidden^Tech")).status_code == 200
        transaction = "1.2.826.0.1.3680043.10.1.122"
        assert ups.state(hidden, "IN PROGRESS", transaction).status_code == 200
        assert ups.update(hidden, _progress("50", "half"), transaction).status_code == 200
        # Afterwards a workitem tech_b sees: everything before it has been read by then.
        _, visible = workitem(world, "SUB22", source="ClinicB")
        received = locked.until(about(visible, "SCHEDULED"))
        assert hidden not in uids(received)
        assert "Hidden^Tech" not in json.dumps(received) and "half" not in json.dumps(received)
        # The other tenant: its own new workitem, and nothing of the default tenant's.
        acme_uid = acme_workitem(world, "ACME20", "P20")
        received = acme.until(about(acme_uid, "SCHEDULED"))
        assert hidden not in uids(received) and "Hidden^Tech" not in json.dumps(received)
    finally:
        locked.close()
        acme.close()
