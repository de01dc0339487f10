"""E-mail notifications to people against a real server and a real SMTP server (aiosmtpd):
one message per study (never per instance), only for studies the person may see (their own
source lock), no patient data in the message, bad input refused."""

from __future__ import annotations

import time
from email import message_from_bytes
from email.policy import default as default_policy

import httpx
import pytest
from aiosmtpd.controller import Controller

from tessera.index import changes
from tessera.index.database import Database
from tessera.synthetic import StudySpec
from tests.conftest import ServerProcess, free_port
from tests.events_support import START_TIMEOUT, ct_study, stow_parts
from tests.security_world import PASSWORD, admin_cli


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def] # noqa: N802
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=default_policy))
        )
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


def test_people_get_one_message_per_visible_study(server_factory, smtp) -> None:  # type: ignore[no-untyped-def]
    controller, mailbox = smtp
    server: ServerProcess = server_factory(
        env_extra={
            "TESSERA_WORKERS": "1",
            "TESSERA_ANONYMOUS": "off",
            "TESSERA_SMTP_HOST": "127.0.0.1",
            "TESSERA_SMTP_PORT": str(controller.port),
            "TESSERA_SMTP_FROM": "archive@hospital.test",
        }
    )
    server.data_dir.mkdir(parents=True, exist_ok=True)
    admin_key = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)["api_key"]
    server.start(timeout=START_TIMEOUT)
    api = f"{server.base_url}/api/v1"
    admin = {"Authorization": f"Bearer {admin_key}"}
    keys = {}
    for source in ("ClinicA", "ClinicB"):
        assert httpx.post(f"{api}/sources", json={"name": source}, headers=admin).status_code < 300
    for user, sources in (("reader_a", ["ClinicA"]), ("reader_all", [])):
        created = httpx.post(
            f"{api}/users",
            json={
                "username": user,
                "role": "reading_physician",
                "password": PASSWORD,
                "sources": sources,
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        keys[user] = {
            "Authorization": "Bearer "
            + httpx.post(f"{api}/api-keys", json={"user": user, "name": "t"}, headers=admin).json()[
                "key"
            ]
        }
    for user, address in (("reader_a", "a@hospital.test"), ("reader_all", "all@hospital.test")):
        made = httpx.post(
            f"{api}/notifications",
            json={"email": address, "event_types": ["study.first_instance", "study.complete"]},
            headers=keys[user],
        )
        assert made.status_code == 201, made.text
    assert [
        n["email"] for n in httpx.get(f"{api}/notifications", headers=keys["reader_a"]).json()
    ] == ["a@hospital.test"]

    clinic_a, clinic_b = StudySpec(patient_name="SECRET^PATIENT"), StudySpec()
    stow_parts(server.dicomweb, ct_study(3, clinic_a), admin, "ClinicA")
    stow_parts(server.dicomweb, ct_study(2, clinic_b), admin, "ClinicB")
    # The orders module records "study complete"; here the test does, through the same call.
    database = Database(server.database_url)
    try:
        with database.write() as conn:
            tenant = conn.exec_driver_sql("SELECT id FROM tenant WHERE name='default'").scalar()
            source = conn.exec_driver_sql("SELECT id FROM source WHERE name='ClinicA'").scalar()
            changes.record_change(
                conn, tenant, source, changes.STUDY_COMPLETE, clinic_a.study_instance_uid
            )
    finally:
        database.dispose()

    deadline = time.time() + 60
    while time.time() < deadline and (
        len(mailbox.to("a@hospital.test")) < 2 or len(mailbox.to("all@hospital.test")) < 3
    ):
        time.sleep(0.2)
    time.sleep(1.0)
    to_a = mailbox.to("a@hospital.test")
    to_all = mailbox.to("all@hospital.test")
    assert sorted(m["X-Tessera-Event"] for m in to_a) == ["study.complete", "study.first_instance"]
    assert sorted(m["X-Tessera-Event"] for m in to_all) == [
        "study.complete",
        "study.first_instance",
        "study.first_instance",
    ]
    for message in to_a:
        body = message.get_content()
        assert clinic_a.study_instance_uid in body and clinic_b.study_instance_uid not in body
        assert "SECRET" not in body and message["From"] == "archive@hospital.test"
    assert {m["Subject"] for m in to_a} == {
        "[Tessera] A study is ready",
        "[Tessera] A new study is arriving",
    }


def test_bad_notification_requests(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(env_extra={"TESSERA_WORKERS": "1"}).start(timeout=START_TIMEOUT)
    api = f"{server.base_url}/api/v1"
    anonymous = httpx.post(f"{api}/notifications", json={"email": "a@b.org"})
    assert anonymous.status_code == 400 and "user account" in anonymous.json()["detail"]
    server.stop()
    server.data_dir.mkdir(parents=True, exist_ok=True)
    key = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)["api_key"]
    server.env_extra["TESSERA_ANONYMOUS"] = "off"
    server.start(timeout=START_TIMEOUT)
    auth = {"Authorization": f"Bearer {key}"}
    for body, named in (
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b.org", "event_types": ["instance.stored"]}, "instance.stored"),
        ({"email": "a@b.org", "event_types": "study.complete"}, "event_types"),
    ):
        response = httpx.post(f"{api}/notifications", json=body, headers=auth)
        assert response.status_code == 400 and named in response.json()["detail"], response.text
    assert httpx.delete(f"{api}/notifications/99", headers=auth).status_code == 404
    assert httpx.post(f"{api}/notifications", json={"email": "a@b.org"}).status_code == 401
