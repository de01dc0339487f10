"""Accounts over real HTTP: the admin API, credentials (API keys, login tokens, Basic),
anonymous access rules, the audit trail, and secrets kept out of logs and answers."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.security_world import PASSWORD, admin_cli


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def secured(server_factory) -> tuple[ServerProcess, str]:  # type: ignore[no-untyped-def]
    """A server that refuses anonymous requests, and its bootstrap admin's API key."""
    server = server_factory(env_extra={"TESSERA_ANONYMOUS": "off", "TESSERA_WORKERS": "1"})
    server.data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--password", PASSWORD)
    assert boot["api_key"].startswith("tsk_") and boot["dicomweb_root"] == "/dicomweb"
    return server.start(), boot["api_key"]


def test_admin_api_and_credentials(secured: tuple[ServerProcess, str]) -> None:
    server, key = secured
    api = f"{server.base_url}/api/v1"
    admin = _bearer(key)
    client = httpx.Client(timeout=30)

    me = client.get(f"{api}/me", headers=admin).json()
    assert me["username"] == "admin" and me["authenticated_by"] == "api_key"
    assert "admin" in me["permissions"] and me["sources"] is None

    # Sources: created, listed, described; a name with a space or a repeat is refused.
    assert client.post(f"{api}/sources", json={"name": "ClinicA"}, headers=admin).status_code == 201
    assert client.post(f"{api}/sources", json={"name": "ClinicA"}, headers=admin).status_code == 409
    bad = client.post(f"{api}/sources", json={"name": "Clinic A"}, headers=admin)
    assert bad.status_code == 400 and "no spaces" in bad.json()["detail"]
    assert (
        client.patch(f"{api}/sources/ClinicA", json={"description": "A"}, headers=admin).status_code
        == 200
    )
    assert {
        "name": "ClinicA",
        "description": "A",
        "default_issuer_of_patient_id": "",
    } in client.get(f"{api}/sources", headers=admin).json()

    # Roles: built-ins listed and fixed; a custom role is a named permission set.
    roles = {r["name"]: r for r in client.get(f"{api}/roles", headers=admin).json()}
    assert roles["technologist"]["permissions"] == ["orders", "read", "report.write", "upload"]
    assert (
        client.put(f"{api}/roles/admin", json={"permissions": []}, headers=admin).status_code == 409
    )
    assert (
        client.put(f"{api}/roles/viewer", json={"permissions": ["fly"]}, headers=admin).status_code
        == 400
    )
    assert (
        client.put(f"{api}/roles/viewer", json={"permissions": ["read"]}, headers=admin).status_code
        == 201
    )

    # Users: validation names the problem.
    for body, word in (
        ({"username": "u1", "role": "pilot", "password": PASSWORD}, "role"),
        ({"username": "u1", "role": "viewer", "password": "short"}, "8 characters"),
        ({"username": "u 1", "role": "viewer", "password": PASSWORD}, "user name"),
        ({"username": "u1", "role": "viewer", "sources": ["Nowhere"]}, "Nowhere"),
        ({"role": "viewer"}, "username"),
    ):
        response = client.post(f"{api}/users", json=body, headers=admin)
        assert response.status_code == 400 and word in response.json()["detail"], response.text
    created = client.post(
        f"{api}/users",
        json={"username": "viv", "role": "viewer", "password": PASSWORD, "sources": ["ClinicA"]},
        headers=admin,
    )
    assert created.status_code == 201
    assert created.json()["sources"] == ["ClinicA"] and PASSWORD not in created.text
    assert "$argon2" not in client.get(f"{api}/users", headers=admin).text

    # Basic and login tokens; the viewer role has no admin permission: 403.
    viv_basic = _basic("viv", PASSWORD)
    assert client.get(f"{api}/me", headers=viv_basic).json()["sources"] == ["ClinicA"]
    assert client.get(f"{api}/users", headers=viv_basic).status_code == 403
    wrong = client.get(f"{api}/me", headers=_basic("viv", "wrong-password"))
    assert wrong.status_code == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
    assert client.get(f"{api}/me", headers=_basic("ghost", PASSWORD)).status_code == 401
    login = client.post(f"{api}/login", json={"username": "viv", "password": PASSWORD})
    assert login.status_code == 200 and login.json()["token_type"] == "Bearer"
    session = _bearer(login.json()["access_token"])
    assert client.get(f"{api}/me", headers=session).json()["authenticated_by"] == "session"
    assert (
        client.post(f"{api}/login", json={"username": "viv", "password": "nope"}).status_code == 401
    )
    assert client.post(f"{api}/logout", headers=session).status_code == 204
    assert client.get(f"{api}/me", headers=session).status_code == 401

    # API keys: shown once, listed without the secret, revocable, expiring.
    made = client.post(f"{api}/api-keys", json={"user": "viv", "name": "script"}, headers=admin)
    assert made.status_code == 201
    viv_key = made.json()["key"]
    listed = client.get(f"{api}/api-keys", headers=admin).json()
    assert viv_key not in str(listed) and any(k["name"] == "script" for k in listed)
    assert client.get(f"{api}/me", headers=_bearer(viv_key)).status_code == 200
    assert client.delete(f"{api}/api-keys/{made.json()['id']}", headers=admin).status_code == 204
    assert client.get(f"{api}/me", headers=_bearer(viv_key)).status_code == 401
    assert client.delete(f"{api}/api-keys/{made.json()['id']}", headers=admin).status_code == 404
    short = client.post(
        f"{api}/api-keys",
        json={"user": "viv", "name": "short", "expires_in_days": 1.5 / 86400},
        headers=admin,
    ).json()
    assert client.get(f"{api}/me", headers=_bearer(short["key"])).status_code == 200
    time.sleep(2)
    assert client.get(f"{api}/me", headers=_bearer(short["key"])).status_code == 401
    assert client.get(f"{api}/me", headers=_bearer("tsk_made-up")).status_code == 401

    # Changing a user: a disabled user is refused everywhere; a deleted one is gone.
    patched = client.patch(f"{api}/users/viv", json={"role": "technologist"}, headers=admin)
    assert patched.status_code == 200 and patched.json()["role"] == "technologist"
    assert (
        client.patch(f"{api}/users/viv", json={"disabled": True}, headers=admin).status_code == 200
    )
    assert client.get(f"{api}/me", headers=viv_basic).status_code == 401
    assert client.delete(f"{api}/users/viv", headers=admin).status_code == 204
    assert client.get(f"{api}/users/viv", headers=admin).status_code == 404
    assert client.delete(f"{api}/roles/viewer", headers=admin).status_code == 204

    # Policies; tenants need the system permission the bootstrap admin lacks here.
    assert client.get(f"{api}/policies", headers=admin).json() == {
        "duplicate_policy": "reject",
        "linked_matching": True,
    }
    assert (
        client.put(f"{api}/policies", json={"duplicate_policy": "merge"}, headers=admin).status_code
        == 400
    )
    assert client.put(
        f"{api}/policies", json={"duplicate_policy": "overwrite"}, headers=admin
    ).json() == {"duplicate_policy": "overwrite", "linked_matching": True}
    assert client.get(f"{api}/tenants", headers=admin).status_code == 403
    assert client.post(f"{api}/users", content=b"{not json", headers=admin).status_code == 400

    # DIMSE peers of the tenant.
    peer = {"host": "10.0.0.7", "port": 104, "upload_source": "ClinicA", "query_sources": []}
    assert client.put(f"{api}/peers/MODALITY1", json=peer, headers=admin).status_code == 201
    assert client.put(f"{api}/peers/MODALITY1", json=peer, headers=admin).status_code == 200
    got = client.get(f"{api}/peers/MODALITY1", headers=admin).json()
    assert got["upload_source"] == "ClinicA" and got["may_be_move_destination"] is True
    assert [p["ae_title"] for p in client.get(f"{api}/peers", headers=admin).json()] == [
        "MODALITY1"
    ]
    bad_source = client.put(
        f"{api}/peers/MODALITY2", json={**peer, "upload_source": "Nowhere"}, headers=admin
    )
    assert bad_source.status_code == 400 and "Nowhere" in bad_source.text
    assert (
        client.put(f"{api}/peers/MODALITY2", json={"host": "h"}, headers=admin).status_code == 400
    )
    long_title = client.put(f"{api}/peers/{'X' * 17}", json=peer, headers=admin)
    assert long_title.status_code == 400
    assert client.delete(f"{api}/peers/MODALITY1", headers=admin).status_code == 204
    assert client.get(f"{api}/peers/MODALITY1", headers=admin).status_code == 404
    assert client.get(f"{api}/ae-titles", headers=admin).status_code == 403

    # The audit trail: logins, admin changes and denials, without secrets.
    deadline = time.time() + 10
    while True:
        events = client.get(f"{api}/audit?limit=1000", headers=admin).json()
        actions = {(e["action"], e["outcome"]) for e in events}
        if ("login", "denied") in actions or time.time() > deadline:
            break
        time.sleep(0.3)
    for expected in (
        ("login", "ok"),
        ("login", "denied"),
        ("authenticate", "denied"),
        ("denied", "denied"),
        ("admin.user.create", "ok"),
        ("admin.api_key.revoke", "ok"),
        ("admin.policy.update", "ok"),
        ("admin.peer.save", "ok"),
    ):
        assert expected in actions, f"{expected} not audited: {sorted(actions)}"
    dump = str(events)
    for secret in (PASSWORD, viv_key, key, login.json()["access_token"], "wrong-password"):
        assert secret not in dump
    assert client.get(f"{api}/audit?action=login", headers=_basic("admin", PASSWORD)).json()
    assert client.get(f"{api}/audit?since=yesterday", headers=admin).status_code == 400

    # Nothing secret in the server log either.
    log = server.log()
    for secret in (PASSWORD, viv_key, key, login.json()["access_token"], "wrong-password"):
        assert secret not in log
    client.close()


def test_anonymous_only_on_loopback_default_tenant(server_factory) -> None:  # type: ignore[no-untyped-def]
    quick = server_factory(env_extra={"TESSERA_WORKERS": "1"}).start()
    api = f"{quick.base_url}/api/v1"
    me = httpx.get(f"{api}/me")
    assert me.status_code == 200 and me.json()["principal"] == "anonymous"
    assert "ANONYMOUS ACCESS IS ON" in quick.log()
    # Through a reverse proxy the caller is not local: refused.
    assert httpx.get(f"{api}/me", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    # The quick start can create a tenant; that tenant's root never serves anonymous.
    assert httpx.post(f"{api}/tenants", json={"name": "acme"}).status_code == 201
    assert httpx.get(f"{quick.base_url}/t/acme/api/v1/me").status_code == 401
    assert httpx.get(f"{quick.base_url}/t/nope/dicomweb/studies/1.2/metadata").status_code == 404
    assert httpx.post(f"{api}/tenants", json={"name": "Bad Name"}).status_code == 400
    assert httpx.post(f"{api}/tenants", json={"name": "dicomweb"}).status_code == 400
    assert httpx.get(f"{quick.base_url}/healthz").status_code == 200

    off = server_factory(env_extra={"TESSERA_WORKERS": "1", "TESSERA_ANONYMOUS": "off"}).start()
    refused = httpx.get(f"{off.dicomweb}/studies/1.2/metadata")
    assert refused.status_code == 401 and "Basic" in refused.headers["WWW-Authenticate"]
    assert httpx.get(f"{off.base_url}/healthz").status_code == 200
    assert "ANONYMOUS ACCESS IS ON" not in off.log()

    public = server_factory(env_extra={"TESSERA_WORKERS": "1", "TESSERA_HOST": "0.0.0.0"}).start()
    assert httpx.get(f"{public.base_url}/api/v1/me").status_code == 401
    assert httpx.get(f"{public.dicomweb}/studies/1.2/metadata").status_code == 401
    assert "ANONYMOUS ACCESS IS ON" not in public.log()
