"""Webhooks against real server processes and a real HTTP receiver: Standard Webhooks
signatures, filters, at-least-once with retries and backoff, dead letter and replay, slow
and redirecting targets, SSRF refusal, bad input."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess
from tests.events_support import START_TIMEOUT, ct_study, stow_parts, tessera_cli
from tests.webhook_receiver import Receiver

DELIVERY_ENV = {
    "TESSERA_WORKERS": "1",
    "TESSERA_OUTBOUND_ALLOW_PRIVATE": "true",
    "TESSERA_DELIVERY_RETRY_BASE_SECONDS": "0.3",
    "TESSERA_DELIVERY_MAX_AGE_SECONDS": "4",
    "TESSERA_WEBHOOK_TIMEOUT_SECONDS": "1.5",
}


@pytest.fixture
def server(server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    return server_factory(env_extra=DELIVERY_ENV).start(timeout=START_TIMEOUT)


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    made = Receiver().start()
    yield made
    made.stop()


def api(server: ServerProcess) -> str:
    return f"{server.base_url}/api/v1"


def subscribe(server: ServerProcess, url: str, **body) -> dict:  # type: ignore[no-untyped-def]
    response = httpx.post(f"{api(server)}/webhooks", json={"url": url, **body}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(server: ServerProcess, webhook: int, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    response = httpx.get(f"{api(server)}/webhooks/{webhook}/deliveries", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_status(server: ServerProcess, webhook: int, status: str, count: int = 1) -> list[dict]:
    deadline = time.time() + 60
    while time.time() < deadline:
        found = deliveries(server, webhook, status=status)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {status} delivery: {deliveries(server, webhook)}")


def test_signed_delivery_once_per_matching_change(server, receiver) -> None:  # type: ignore[no-untyped-def]
    hook = subscribe(
        server,
        receiver.url + "?token=tok-SECRET-42",
        event_types=["study.first_instance"],
        filters={"modalities": ["CT"]},
        description="new CT studies",
    )
    assert hook["secret"].startswith("whsec_")
    ct = StudySpec()
    stow_parts(server.dicomweb, ct_study(3, ct))
    mr_series = "1.2.3.4"
    from tessera.synthetic import mr_rle_image

    stow_parts(server.dicomweb, [mr_rle_image(StudySpec(), mr_series, 1, 16)])

    [message] = receiver.wait_for(1)
    time.sleep(1.0)
    assert len(receiver.received) == 1  # one per study, not per instance; MR filtered out
    payload = Webhook(hook["secret"]).verify(message.body, message.headers)
    assert payload["type"] == "study.first_instance"
    assert payload["data"]["study_instance_uid"] == ct.study_instance_uid
    assert payload["data"]["detail"]["modality"] == "CT"
    with pytest.raises(Exception):  # noqa: B017 (the library's own verification error)
        Webhook("whsec_" + "QUJD" * 8).verify(message.body, message.headers)

    [delivery] = wait_status(server, hook["id"], "delivered")
    assert delivery["attempts"] == 1 and delivery["type"] == "study.first_instance"
    detail = httpx.get(f"{api(server)}/webhook-deliveries/{delivery['id']}", timeout=30).json()
    assert [a["status_code"] for a in detail["attempt_log"]] == [204]
    assert detail["payload"] == orjson.loads(message.body)
    listed = httpx.get(f"{api(server)}/webhooks", timeout=30).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert message.path == "/hook?token=tok-SECRET-42"
    assert hook["secret"] not in server.log() and "tok-SECRET-42" not in server.log()


def test_failures_are_retried_with_the_same_id_until_delivered(server, receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.answers = [500, 503, ("redirect", "http://example.org/elsewhere")]
    hook = subscribe(server, receiver.url, event_types=["study.first_instance"])
    stow_parts(server.dicomweb, ct_study(1))
    received = receiver.wait_for(4)
    assert len({r.headers["webhook-id"] for r in received}) == 1
    gaps = [b.at - a.at for a, b in zip(received, received[1:], strict=False)]
    assert all(gap >= 0.1 for gap in gaps)  # backed off, not hammered
    [delivery] = wait_status(server, hook["id"], "delivered")
    detail = httpx.get(f"{api(server)}/webhook-deliveries/{delivery['id']}", timeout=30).json()
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 503, 307, 204]
    assert "not followed" in detail["attempt_log"][2]["error"]
    assert delivery["attempts"] == 4


def test_dead_letter_after_the_retry_window_then_replay(server, receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.default = 500
    hook = subscribe(server, receiver.url, event_types=["instance.stored"])
    stow_parts(server.dicomweb, ct_study(2))
    dead = wait_status(server, hook["id"], "dead", 2)
    assert all(d["attempts"] >= 2 and d["last_status_code"] == 500 for d in dead)
    assert deliveries(server, hook["id"], status="pending") == []

    receiver.default = 200
    before = len(receiver.received)
    one = httpx.post(f"{api(server)}/webhook-deliveries/{dead[0]['id']}/replay", timeout=30)
    assert one.status_code == 200 and one.json()["status"] == "pending"
    wait_status(server, hook["id"], "delivered", 1)
    still_dead = tessera_cli(server, "webhooks", "deliveries", str(hook["id"]), "--status", "dead")
    assert [d["id"] for d in still_dead] == [dead[1]["id"]]
    rest = httpx.post(f"{api(server)}/webhooks/{hook['id']}/replay", timeout=30).json()
    assert rest == {"replayed": 1}
    wait_status(server, hook["id"], "delivered", 2)
    assert len(receiver.received) == before + 2


def test_slow_target_does_not_block_other_deliveries_or_ingest(server, receiver) -> None:  # type: ignore[no-untyped-def]
    slow = Receiver(default=("sleep", 5)).start()
    try:
        slow_hook = subscribe(server, slow.url, event_types=["instance.stored"])
        fast_hook = subscribe(server, receiver.url, event_types=["instance.stored"])
        spec = StudySpec()
        started = time.time()
        for number in range(1, 6):
            stow_parts(server.dicomweb, [ct_image(spec, "1.2.3", number, 16, 16)])
        assert time.time() - started < 30
        receiver.wait_for(5, timeout=20)
        assert len(wait_status(server, fast_hook["id"], "delivered", 5)) == 5
        # The slow target's attempts time out (1.5 s) and are retried, never delivered.
        time.sleep(2)
        found = deliveries(server, slow_hook["id"])
        assert all(d["status"] != "delivered" for d in found)
        errors = {d["last_error"] for d in found if d["attempts"]}
        assert errors == {"timed out"}
    finally:
        slow.stop()


def test_deleting_and_disabling_subscriptions(server, receiver) -> None:  # type: ignore[no-untyped-def]
    hook = subscribe(server, receiver.url)
    off = httpx.patch(f"{api(server)}/webhooks/{hook['id']}", json={"enabled": False}, timeout=30)
    assert off.status_code == 200 and off.json()["enabled"] is False
    stow_parts(server.dicomweb, ct_study(1))
    time.sleep(1.5)
    assert receiver.received == []
    assert httpx.delete(f"{api(server)}/webhooks/{hook['id']}", timeout=30).status_code == 204
    assert httpx.get(f"{api(server)}/webhooks/{hook['id']}", timeout=30).status_code == 404


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A server with the default outbound policy (private addresses refused)."""
    base = tmp_path_factory.mktemp("webhooks-guarded")
    made = ServerProcess(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'index.sqlite3'}",
        env_extra={"TESSERA_WORKERS": "1"},
    ).start(timeout=START_TIMEOUT)
    yield made
    made.stop()


@pytest.mark.parametrize(
    "body,named",
    [
        ({"url": "http://127.0.0.1:9/hook"}, "loopback/private"),
        ({"url": "http://localhost/hook"}, "loopback/private"),
        ({"url": "http://10.1.2.3/hook"}, "loopback/private"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "loopback/private"),
        ({"url": "http://[::1]/hook"}, "loopback/private"),
        ({"url": "ftp://8.8.8.8/hook"}, "http://"),
        ({"url": "http://user:pw@8.8.8.8/hook"}, "credentials"),
        ({"url": "http://no-such-host.invalid/hook"}, "does not resolve"),
        ({}, "'url' is required"),
        ({"url": "http://8.8.8.8/", "event_types": ["study.exploded"]}, "study.exploded"),
        ({"url": "http://8.8.8.8/", "filters": {"colour": ["red"]}}, "colour"),
        ({"url": "http://8.8.8.8/", "filters": {"sources": ["Nowhere"]}}, "Nowhere"),
        ({"url": "http://8.8.8.8/", "secret": "plain"}, "secret"),
        ({"url": "http://8.8.8.8/", "event_types": "all"}, "event_types"),
    ],
)
def test_bad_subscriptions_are_400_naming_the_problem(guarded_server, body, named) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(f"{api(guarded_server)}/webhooks", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]


def test_bad_requests_on_deliveries(guarded_server) -> None:  # type: ignore[no-untyped-def]
    base = api(guarded_server)
    assert httpx.get(f"{base}/webhooks/abc", timeout=30).status_code == 404
    assert httpx.get(f"{base}/webhooks/999", timeout=30).status_code == 404
    assert httpx.get(f"{base}/webhook-deliveries/999", timeout=30).status_code == 404
    assert httpx.post(f"{base}/webhook-deliveries/999/replay", timeout=30).status_code == 404
    hook = httpx.post(f"{base}/webhooks", json={"url": "http://8.8.8.8/"}, timeout=30).json()
    bad = httpx.get(f"{base}/webhooks/{hook['id']}/deliveries?status=lost", timeout=30)
    assert bad.status_code == 400 and "status" in bad.json()["detail"]
    bad = httpx.patch(f"{base}/webhooks/{hook['id']}", json={"url": "x"}, timeout=30)
    assert bad.status_code == 400
    bad = httpx.post(f"{base}/webhooks", content=b"{not json", timeout=30)
    assert bad.status_code == 400 and "JSON" in bad.json()["detail"]
