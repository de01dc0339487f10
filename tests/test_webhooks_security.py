"""Webhooks and the caller's Scope: another tenant never sees a tenant's subscriptions or
deliveries; a source-locked administrator makes only subscriptions limited to its sources,
sees no subscription or delivery that could carry other sources' changes, and its webhook
receives only its sources' changes."""

from __future__ import annotations

import time

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.security_world import World, instance_bytes, stow
from tests.webhook_receiver import Receiver
from tests.world import DATABASES, add_user, served_world


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(
        request.param,
        tmp_path_factory,
        "hook-security",
        env={"TESSERA_OUTBOUND_ALLOW_PRIVATE": "true"},
    ) as built:
        add_user(built, "admin_a", "admin", ["ClinicA"])
        yield built


def _post(world: World, user: str, body: dict, tenant: str = "default") -> httpx.Response:
    return httpx.post(
        f"{world.api(tenant)}/webhooks", json=body, headers=world.auth(user), timeout=30
    )


def test_locked_admin_and_other_tenant_see_only_their_own(world: World) -> None:
    every, mine = Receiver().start(), Receiver().start()
    try:
        all_hook = _post(world, "admin", {"url": every.url, "event_types": ["instance.stored"]})
        assert all_hook.status_code == 201, all_hook.text
        all_hook = all_hook.json()
        locked = _post(world, "admin_a", {"url": mine.url, "event_types": ["instance.stored"]})
        assert locked.status_code == 201, locked.text
        locked = locked.json()
        assert locked["filters"]["sources"] == ["ClinicA"]
        refused = _post(world, "admin_a", {"url": mine.url, "filters": {"sources": ["ClinicB"]}})
        assert refused.status_code == 400 and "ClinicB" in refused.json()["detail"]
        assert _post(world, "tech", {"url": mine.url}).status_code == 403

        for number, source in ((10, "ClinicA"), (11, "ClinicB")):
            uids = (generate_uid(), generate_uid(), generate_uid())
            data = instance_bytes(*uids, "DEFAULTTENANT^PATIENT", number)
            assert stow(world.url(), [data], world.auth("admin"), source).status_code == 200
        every.wait_for(2)
        mine.wait_for(1)
        time.sleep(1.0)
        assert len(mine.received) == 1
        assert b"ClinicA" in mine.received[0].body and b"ClinicB" not in mine.received[0].body

        def get(user: str, path: str, tenant: str = "default") -> httpx.Response:
            return httpx.get(f"{world.api(tenant)}{path}", headers=world.auth(user), timeout=30)

        assert [h["id"] for h in get("admin_a", "/webhooks").json()] == [locked["id"]]
        assert {h["id"] for h in get("admin", "/webhooks").json()} == {
            all_hook["id"],
            locked["id"],
        }
        assert get("admin_a", f"/webhooks/{all_hook['id']}").status_code == 404
        assert get("admin_a", f"/webhooks/{all_hook['id']}/deliveries").status_code == 404
        deadline = time.time() + 30
        while time.time() < deadline:
            shown = get("admin", f"/webhooks/{all_hook['id']}/deliveries").json()
            if len(shown) == 2 and all(d["status"] == "delivered" for d in shown):
                break
            time.sleep(0.2)
        for delivery in shown:
            assert get("admin_a", f"/webhook-deliveries/{delivery['id']}").status_code == 404
            replay = httpx.post(
                f"{world.api()}/webhook-deliveries/{delivery['id']}/replay",
                headers=world.auth("admin_a"),
                timeout=30,
            )
            assert replay.status_code == 404
            assert (
                get("acme_admin", f"/webhook-deliveries/{delivery['id']}", "acme").status_code
                == 404
            )

        assert get("acme_admin", "/webhooks", "acme").json() == []
        assert get("acme_admin", f"/webhooks/{locked['id']}", "acme").status_code == 404
        gone = httpx.delete(
            f"{world.api('acme')}/webhooks/{locked['id']}",
            headers=world.auth("acme_admin"),
            timeout=30,
        )
        assert gone.status_code == 404
        assert get("admin_a", f"/webhooks/{locked['id']}").status_code == 200
        assert get("acme_admin", "/webhooks").status_code == 401
    finally:
        every.stop()
        mine.stop()


def test_routes_of_hidden_sources_and_other_tenants_stay_hidden(world: World) -> None:
    closed = {"kind": "dimse", "ae_title": "NOWHERE", "host": "127.0.0.1", "port": 9}

    def post(user: str, body: dict, tenant: str = "default") -> httpx.Response:
        return httpx.post(
            f"{world.api(tenant)}/routes", json=body, headers=world.auth(user), timeout=30
        )

    def get(user: str, path: str, tenant: str = "default") -> httpx.Response:
        return httpx.get(f"{world.api(tenant)}{path}", headers=world.auth(user), timeout=30)

    assert post("admin", {"name": "everything", "destination": closed}).status_code == 201
    mine = post("admin_a", {"name": "clinic-a", "destination": closed})
    assert mine.status_code == 201, mine.text
    assert mine.json()["conditions"]["sources"] == ["ClinicA"]
    refused = post(
        "admin_a", {"name": "b", "conditions": {"sources": ["ClinicB"]}, "destination": closed}
    )
    assert refused.status_code == 400
    assert post("tech", {"name": "t", "destination": closed}).status_code == 403

    uids = {}
    for number, source in ((20, "ClinicA"), (21, "ClinicB")):
        uids[source] = (generate_uid(), generate_uid(), generate_uid())
        data = instance_bytes(*uids[source], "DEFAULTTENANT^PATIENT", number)
        assert stow(world.url(), [data], world.auth("admin"), source).status_code == 200
    deadline = time.time() + 30
    while time.time() < deadline:
        everything = get("admin", "/routes/everything/deliveries").json()
        if len(everything) == 2:
            break
        time.sleep(0.2)
    assert {d["sop_instance_uid"] for d in everything} == {
        uids["ClinicA"][2],
        uids["ClinicB"][2],
    }
    deadline = time.time() + 30
    while time.time() < deadline:
        only_a = get("admin_a", "/routes/clinic-a/deliveries").json()
        if only_a:
            break
        time.sleep(0.2)
    assert [d["sop_instance_uid"] for d in only_a] == [uids["ClinicA"][2]]

    assert [r["name"] for r in get("admin_a", "/routes").json()] == ["clinic-a"]
    assert get("admin_a", "/routes/everything").status_code == 404
    assert get("admin_a", "/routes/everything/deliveries").status_code == 404
    send_b = httpx.post(
        f"{world.api()}/routes/clinic-a/send",
        json={"study_instance_uid": uids["ClinicB"][0]},
        headers=world.auth("admin_a"),
        timeout=30,
    )
    assert send_b.status_code == 404  # a ClinicB study is not the rule's (nor the caller's)
    assert get("acme_admin", "/routes", "acme").json() == []
    assert get("acme_admin", "/routes/clinic-a", "acme").status_code == 404


def test_one_delivery_sent_again_only_by_who_sees_it(world: World) -> None:
    """POST {api}/routes/{name}/deliveries/{id}/send: a delivered instance back to pending and
    delivered again; a pending one is 409; a delivery of a hidden source, of another rule,
    of another tenant, or a malformed id is 404; without `admin`, 403."""
    # The archive itself as the destination: an identical instance is an idempotent success.
    self_root = {
        "kind": "dicomweb",
        "url": world.url(),
        "authorization": world.auth("admin")["Authorization"],
    }
    closed = {"kind": "dimse", "ae_title": "NOWHERE", "host": "127.0.0.1", "port": 9}
    for user, body in (
        ("admin", {"name": "loop", "destination": self_root}),
        ("admin", {"name": "stuck", "destination": closed}),
        ("admin_a", {"name": "loop-a", "destination": self_root}),
    ):
        made = httpx.post(f"{world.api()}/routes", json=body, headers=world.auth(user), timeout=30)
        assert made.status_code == 201, made.text
    uids = {}
    for number, source in ((30, "ClinicA"), (31, "ClinicB")):
        uids[source] = (generate_uid(), generate_uid(), generate_uid())
        data = instance_bytes(*uids[source], "DEFAULTTENANT^PATIENT", number)
        assert stow(world.url(), [data], world.auth("admin"), source).status_code == 200

    def deliveries(user: str, rule: str, count: int, status: str) -> list[dict]:
        deadline = time.time() + 60
        while True:
            found = httpx.get(
                f"{world.api()}/routes/{rule}/deliveries",
                headers=world.auth(user),
                timeout=30,
            ).json()
            if len(found) == count and all(d["status"] == status for d in found):
                return found
            assert time.time() < deadline, found
            time.sleep(0.2)

    def send(user: str, rule: str, delivery: object, tenant: str = "default") -> httpx.Response:
        return httpx.post(
            f"{world.api(tenant)}/routes/{rule}/deliveries/{delivery}/send",
            headers=world.auth(user),
            timeout=30,
        )

    loop = {d["sop_instance_uid"]: d for d in deliveries("admin", "loop", 2, "delivered")}
    [mine] = deliveries("admin_a", "loop-a", 1, "delivered")
    assert mine["sop_instance_uid"] == uids["ClinicA"][2]
    b_delivery = loop[uids["ClinicB"][2]]["id"]
    # Another rule's delivery, a hidden source's, a hidden rule, another tenant: 404.
    assert send("admin_a", "loop-a", b_delivery).status_code == 404
    assert send("admin_a", "loop", b_delivery).status_code == 404
    assert send("acme_admin", "loop", b_delivery, "acme").status_code == 404
    assert send("admin", "loop", "x1").status_code == 404
    assert send("admin", "loop", 10**30).status_code == 404
    assert send("tech", "loop", b_delivery).status_code == 403
    [pending] = httpx.get(
        f"{world.api()}/routes/stuck/deliveries", headers=world.auth("admin"), timeout=30
    ).json()[:1]
    conflict = send("admin", "stuck", pending["id"])
    assert conflict.status_code == 409 and "pending" in conflict.json()["detail"]

    again = send("admin_a", "loop-a", mine["id"])
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending" and again.json()["attempts"] == 0
    [after] = deliveries("admin_a", "loop-a", 1, "delivered")
    assert after["attempts"] == 1 and after["delivered_at"] >= mine["delivered_at"]
    # Only that one: the rule's other deliveries were not touched.
    assert {d["delivered_at"] for d in deliveries("admin", "loop", 2, "delivered")} == {
        d["delivered_at"] for d in loop.values()
    }
