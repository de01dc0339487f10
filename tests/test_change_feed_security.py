"""The change feed and the caller's Scope: another tenant's changes never appear, a
source-locked user sees only its sources' changes (and no cursor that counts hidden ones),
a caller without the read permission gets 403, another tenant's credential 401."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.events_support import read_whole_feed
from tests.security_world import World
from tests.world import DATABASES, served_world


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "feed-security") as built:
        yield built


def _feed(world: World, user: str, tenant: str = "default") -> list[dict]:
    return read_whole_feed(world.server, world.auth(user), world.api(tenant))


@pytest.mark.parametrize("user", ["admin", "tech", "ref_a", "read_b"])
def test_each_user_sees_exactly_the_changes_of_its_sources(world: World, user: str) -> None:
    feed = _feed(world, user)
    stored = {c["sop_instance_uid"] for c in feed if c["type"] == "instance.stored"}
    visible = {o.instance for o in world.objects if world.visible(user, o)}
    hidden = {o.instance for o in world.objects} - visible
    assert stored == visible
    sources = world.sees[user]
    assert all(sources is None or c["source"] in sources for c in feed)
    text = str(feed)
    assert not any(uid in text for uid in hidden)
    # Studies that hold only hidden instances are never named.
    visible_studies = {o.study for o in world.objects if world.visible(user, o)}
    assert {c["study_instance_uid"] for c in feed} <= visible_studies


def test_locked_users_cursor_never_counts_hidden_changes(world: World) -> None:
    everything = _feed(world, "admin")
    # A locked user whose last visible change is followed by hidden ones.
    user, mine = next(
        (user, mine)
        for user in ("ref_a", "read_b")
        if (mine := _feed(world, user))[-1]["seq"] < everything[-1]["seq"]
    )
    last_visible = mine[-1]["seq"]
    page = httpx.get(
        f"{world.api()}/changes",
        params={"after": last_visible, "wait": 1},
        headers=world.auth(user),
        timeout=30,
    ).json()
    assert page == {"changes": [], "next": last_visible}


def test_other_tenant_sees_only_its_own_feed(world: World) -> None:
    acme = _feed(world, "acme_admin", "acme")
    default = _feed(world, "admin")
    assert [c["seq"] for c in acme] == list(range(1, len(acme) + 1))
    # Identical UIDs in both tenants, but each feed is the tenant's own numbering and rows.
    assert len(acme) == len(default)
    assert all(c["source"] == "default" for c in acme)
    assert {c["source"] for c in default} == {"ClinicA", "ClinicB"}


def test_without_read_permission_403_and_foreign_credential_401(world: World) -> None:
    response = httpx.get(f"{world.api()}/changes", headers=world.auth("nobody"), timeout=30)
    assert response.status_code == 403
    response = httpx.get(f"{world.api()}/changes", headers=world.auth("acme_admin"), timeout=30)
    assert response.status_code == 401
    response = httpx.get(f"{world.api()}/changes", timeout=30)
    assert response.status_code == 401


def _sse(world: World, user: str, count: int, headers: dict | None = None) -> list[dict]:
    """Read `count` events from the server-sent event stream."""
    import json

    events: list[dict] = []
    with httpx.stream(
        "GET",
        f"{world.api()}/changes/stream",
        headers={**world.auth(user), **(headers or {})},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict = {}
        # Heartbeats keep the read timeout from firing: a missing event must fail, not hang.
        deadline = time.monotonic() + 60
        for line in response.iter_lines():
            assert time.monotonic() < deadline, f"{count} events wanted, {len(events)} came"
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                current = {}
                if len(events) == count:
                    break
    return events


def test_server_sent_events_show_the_same_scoped_feed_and_resume(world: World) -> None:
    feed = _feed(world, "ref_a")
    events = _sse(world, "ref_a", len(feed))
    assert [e["id"] for e in events] == [c["seq"] for c in feed]
    assert [e["event"] for e in events] == [c["type"] for c in feed]
    assert [e["data"] for e in events] == feed
    resumed = _sse(world, "ref_a", 1, {"Last-Event-ID": str(feed[0]["seq"])})
    assert resumed[0]["id"] == feed[1]["seq"]
    denied = httpx.get(f"{world.api()}/changes/stream", headers=world.auth("nobody"), timeout=30)
    assert denied.status_code == 403
    bad = httpx.get(
        f"{world.api()}/changes/stream",
        headers={**world.auth("ref_a"), "Last-Event-ID": "x"},
        timeout=30,
    )
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]
