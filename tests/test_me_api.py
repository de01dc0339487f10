"""A user's own actions over real HTTP (tessera/dicomweb/me_api.py): changing one's password
(`POST {api}/me/password`) and minting a short-lived, read-only viewer token
(`POST {api}/viewer-token`), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import ServerProcess
from tests.security_world import PASSWORD, admin_cli, instance_bytes, stow

NEW_PASSWORD = "a-brand-new-secret"
VIEWER_TTL = 6


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def secured(server_factory) -> tuple[ServerProcess, str]:  # type: ignore[no-untyped-def]
    """Credentials required; viewer tokens live VIEWER_TTL seconds. Sources ClinicA and
    ClinicB, user `viv` (reading physician) locked to ClinicA."""
    server = server_factory(
        env_extra={
            "TESSERA_ANONYMOUS": "off",
            "TESSERA_WORKERS": "1",
            "TESSERA_VIEWER_TOKEN_TTL_SECONDS": str(VIEWER_TTL),
        }
    )
    server.data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    server.start()
    api, admin = f"{server.base_url}/api/v1", _bearer(boot["api_key"])
    for source in ("ClinicA", "ClinicB"):
        assert httpx.post(f"{api}/sources", json={"name": source}, headers=admin).is_success
    viv = {
        "username": "viv",
        "role": "reading_physician",
        "password": PASSWORD,
        "sources": ["ClinicA"],
    }
    assert httpx.post(f"{api}/users", json=viv, headers=admin).status_code == 201
    return server, boot["api_key"]


def _login(api: str, username: str, password: str = PASSWORD) -> str:
    answer = httpx.post(f"{api}/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def test_own_password_change(secured: tuple[ServerProcess, str]) -> None:
    server, key = secured
    api = f"{server.base_url}/api/v1"
    client = httpx.Client(timeout=30)
    first, second = _login(api, "viv"), _login(api, "viv")
    viewer = client.post(f"{api}/viewer-token", headers=_bearer(second)).json()["access_token"]
    change = f"{api}/me/password"
    me = _bearer(first)

    # Bad input: each refusal names the problem, and nothing changes.
    for body, status, words in (
        ({"current_password": "not-it-at-all", "new_password": NEW_PASSWORD}, 403, "wrong"),
        ({"current_password": PASSWORD, "new_password": "short"}, 400, "at least 8 characters"),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, 400, "differ"),
        ({"current_password": PASSWORD}, 400, "'new_password' is required"),
        ({"current_password": PASSWORD, "new_password": 12345678}, 400, "must be a str"),
    ):
        answer = client.post(change, json=body, headers=me)
        assert answer.status_code == status and words in answer.json()["detail"], answer.text
    assert client.post(change, content=b"[1", headers=me).status_code == 400
    # No credentials at all: 401 before anything else.
    assert client.post(change, json={}).status_code == 401
    # A viewer token reads only: it cannot change the password even knowing it.
    refused = client.post(
        change,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=_bearer(viewer),
    )
    assert refused.status_code == 403 and "viewer token" in refused.json()["detail"]
    assert client.get(f"{api}/me", headers=_bearer(second)).status_code == 200

    done = client.post(
        change, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=me
    )
    assert done.status_code == 204, done.text
    # The session that changed it goes on; the user's other session and its viewer token end.
    assert client.get(f"{api}/me", headers=me).status_code == 200
    assert client.get(f"{api}/me", headers=_bearer(second)).status_code == 401
    assert client.get(f"{server.dicomweb}/studies", headers=_bearer(viewer)).status_code == 401
    # The old password is dead everywhere, the new one works.
    assert (
        client.post(f"{api}/login", json={"username": "viv", "password": PASSWORD}).status_code
        == 401
    )
    assert client.get(f"{api}/me", headers=_basic("viv", PASSWORD)).status_code == 401
    assert client.get(f"{api}/me", headers=_basic("viv", NEW_PASSWORD)).status_code == 200
    _login(api, "viv", NEW_PASSWORD)

    # Audited: the refusal and the change, no secret in either.
    time.sleep(1.0)  # request events are written in batches
    events = client.get(
        f"{api}/audit", params={"action": "user.password.change"}, headers=_bearer(key)
    ).json()
    assert sorted(e["outcome"] for e in events) == ["denied", "ok"]
    assert all(e["target"] == "viv" for e in events)
    assert PASSWORD not in str(events) and NEW_PASSWORD not in str(events)


def _study(server: ServerProcess, key: str, source: str, patient: str) -> str:
    study = generate_uid()
    part = instance_bytes(study, generate_uid(), generate_uid(), patient, 1)
    assert stow(server.dicomweb, [part], _bearer(key), source=source).status_code == 200
    return study


def test_viewer_token_reads_only_what_its_user_reads(secured: tuple[ServerProcess, str]) -> None:
    server, key = secured
    api, web = f"{server.base_url}/api/v1", server.dicomweb
    client = httpx.Client(timeout=30)
    mine = _study(server, key, "ClinicA", "ALFA^ANNA")
    hidden = _study(server, key, "ClinicB", "BRAVO^BERT")
    admin_session = _login(api, "admin")
    viv_session = _login(api, "viv")
    dicom_json = {"Accept": "application/dicom+json"}

    made = client.post(f"{api}/viewer-token", headers=_bearer(viv_session))
    assert made.status_code == 201, made.text
    answer = made.json()
    token = answer["access_token"]
    assert token.startswith("tsv_") and answer["expires_in"] == VIEWER_TTL
    minted_at = time.monotonic()
    viewer = {**_bearer(token), **dicom_json}

    # It reads what viv reads, within her source lock.
    found = client.get(f"{web}/studies", headers=viewer)
    assert found.status_code == 200
    assert [s["0020000D"]["Value"][0] for s in found.json()] == [mine]
    assert client.get(f"{web}/studies/{mine}/metadata", headers=viewer).status_code == 200
    assert client.get(f"{web}/studies/{hidden}/metadata", headers=viewer).status_code == 404
    me = client.get(f"{api}/me", headers=_bearer(token)).json()
    assert me["permissions"] == ["read"] and me["sources"] == ["ClinicA"]
    assert me["authenticated_by"] == "viewer" and me["username"] == "viv"

    # Nothing but reading: viv's report permissions are not in it, nor a new token.
    part = instance_bytes(generate_uid(), generate_uid(), generate_uid(), "NEW^ONE", 1)
    assert stow(web, [part], _bearer(token), source="ClinicA").status_code == 403
    report = client.post(
        f"{api}/studies/{mine}/reports",
        json={"sections": {"findings": "x"}},
        headers=_bearer(token),
    )
    assert report.status_code == 403
    assert client.post(f"{api}/viewer-token", headers=_bearer(token)).status_code == 403
    assert client.post(f"{api}/logout", headers=_bearer(token)).status_code == 400
    assert time.monotonic() - minted_at < VIEWER_TTL, "the machine is too slow for this TTL"

    # An admin's viewer token is no admin: the admin API and writes refuse it.
    admin_viewer = client.post(f"{api}/viewer-token", headers=_bearer(admin_session)).json()
    admin_token = _bearer(admin_viewer["access_token"])
    assert client.get(f"{api}/users", headers=admin_token).status_code == 403
    assert client.post(f"{api}/sources", json={"name": "X"}, headers=admin_token).status_code == 403
    assert client.get(f"{web}/studies", headers={**admin_token, **dicom_json}).json()
    # Another tenant does not know it.
    assert client.post(
        f"{api}/tenants",
        json={"name": "acme", "admin": {"username": "boss", "password": PASSWORD}},
        headers=_bearer(key),
    ).is_success
    other = f"{server.base_url}/t/acme/dicomweb/studies"
    assert client.get(other, headers={**admin_token, **dicom_json}).status_code == 401

    # Anyone signed in may mint one (Basic too); without credentials: 401.
    assert client.post(f"{api}/viewer-token", headers=_basic("viv", PASSWORD)).status_code == 201
    assert client.post(f"{api}/viewer-token").status_code == 401

    # Logging out of the session ends its viewer tokens.
    assert client.post(f"{api}/logout", headers=_bearer(admin_session)).status_code == 204
    assert client.get(f"{web}/studies", headers={**admin_token, **dicom_json}).status_code == 401

    # It expires.
    time.sleep(max(0.0, VIEWER_TTL + 0.5 - (time.monotonic() - minted_at)))
    assert client.get(f"{web}/studies", headers=viewer).status_code == 401
    assert client.get(f"{api}/me", headers=_bearer(viv_session)).status_code == 200
