"""An administrator hands out only what they hold (issue 20, item 1).

A tenant admin without the system flag must not mint credentials for, change, disable or
delete a more powerful user, nor widen anyone's rights (their own included) beyond theirs,
through users, roles, API keys or DIMSE peers. A source-locked admin must not create or widen
anything past their sources. Over real HTTP against a real server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.security_world import PASSWORD, admin_cli


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Team:
    """System admin `root`, plain tenant admin `ta`, admin `la` locked to ClinicA, and
    `custom_admin` whose custom role holds only `admin` and `read`."""

    def __init__(self, server: ServerProcess, root_key: str) -> None:
        self.api = f"{server.base_url}/api/v1"
        self.client = httpx.Client(timeout=30)
        self.keys = {"root": root_key}
        root = self.auth("root")
        for source in ("ClinicA", "ClinicB"):
            self.ok(self.client.post(f"{self.api}/sources", json={"name": source}, headers=root))
        self.ok(
            self.client.put(
                f"{self.api}/roles/gatekeeper",
                json={"permissions": ["admin", "read"]},
                headers=root,
            )
        )
        for username, role, sources in (
            ("ta", "admin", []),
            ("la", "admin", ["ClinicA"]),
            ("custom_admin", "gatekeeper", []),
            ("tech_b", "technologist", ["ClinicB"]),
            ("viewer", "referring_physician", []),
        ):
            self.ok(
                self.client.post(
                    f"{self.api}/users",
                    json={
                        "username": username,
                        "role": role,
                        "password": PASSWORD,
                        "sources": sources,
                        "upload_sources": sources,
                    },
                    headers=root,
                )
            )
            self.keys[username] = self.ok(
                self.client.post(f"{self.api}/api-keys", json={"user": username}, headers=root)
            )["key"]

    def auth(self, user: str) -> dict[str, str]:
        return _bearer(self.keys[user])

    @staticmethod
    def ok(response: httpx.Response) -> dict:
        assert response.status_code < 300, response.text
        return response.json() if response.content else {}


@pytest.fixture
def team(server_factory) -> Team:  # type: ignore[no-untyped-def]
    server = server_factory(env_extra={"TESSERA_ANONYMOUS": "off", "TESSERA_WORKERS": "1"})
    server.data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    return Team(server.start(), boot["api_key"])


def test_tenant_admin_cannot_take_over_the_system_administrator(team: Team) -> None:
    c, api, ta = team.client, team.api, team.auth("ta")
    assert c.get(f"{api}/tenants", headers=ta).status_code == 403

    minted = c.post(f"{api}/api-keys", json={"user": "admin"}, headers=ta)
    assert minted.status_code == 403, minted.text
    assert "system" in minted.json()["detail"]
    for change in ({"password": "taken-over-now"}, {"disabled": True}, {"role": "admin"}):
        answer = c.patch(f"{api}/users/admin", json=change, headers=ta)
        assert answer.status_code == 403, (change, answer.text)
    assert c.delete(f"{api}/users/admin", headers=ta).status_code == 403

    # The system administrator is untouched: the old password still logs in, the old key works.
    login = c.post(f"{api}/login", json={"username": "admin", "password": "taken-over-now"})
    assert login.status_code == 401
    login = c.post(f"{api}/login", json={"username": "admin", "password": PASSWORD})
    assert login.status_code == 200
    assert c.get(f"{api}/tenants", headers=team.auth("root")).status_code == 200
    # ...and cannot lose its API key to the tenant admin either.
    root_keys = [k for k in c.get(f"{api}/api-keys", headers=ta).json() if k["user"] == "admin"]
    assert root_keys
    revoked = c.delete(f"{api}/api-keys/{root_keys[0]['id']}", headers=ta)
    assert revoked.status_code == 403
    assert c.get(f"{api}/tenants", headers=team.auth("root")).status_code == 200

    # The denials reach the audit trail (it is written in batches).
    deadline = time.time() + 10
    while True:
        denied = c.get(f"{api}/audit", params={"action": "denied"}, headers=team.auth("root"))
        if any(e["principal"].startswith("ta") for e in denied.json()) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert any(e["principal"].startswith("ta") for e in denied.json())


def test_tenant_admin_still_manages_equals_and_lesser_users(team: Team) -> None:
    c, api, ta = team.client, team.api, team.auth("ta")
    assert c.post(f"{api}/api-keys", json={"user": "viewer"}, headers=ta).status_code == 201
    assert (
        c.patch(f"{api}/users/la", json={"password": "new-pass-1"}, headers=ta).status_code == 200
    )
    assert c.patch(f"{api}/users/viewer", json={"role": "admin"}, headers=ta).status_code == 200
    assert c.delete(f"{api}/users/tech_b", headers=ta).status_code == 204
    made = c.post(f"{api}/users", json={"username": "new_admin", "role": "admin"}, headers=ta)
    assert made.status_code == 201


@pytest.mark.parametrize(
    "call",
    [
        # Grant a role with more than the caller holds.
        lambda c, api: c.post(f"{api}/users", json={"username": "x1", "role": "technologist"}),
        lambda c, api: c.patch(f"{api}/users/viewer", json={"role": "admin"}),
        # Act on a user who holds more.
        lambda c, api: c.post(f"{api}/api-keys", json={"user": "ta"}),
        lambda c, api: c.patch(f"{api}/users/ta", json={"password": "x-password-2"}),
        lambda c, api: c.delete(f"{api}/users/ta"),
        # Custom roles beyond the caller, or a built-in one it does not hold.
        lambda c, api: c.put(f"{api}/roles/bigger", json={"permissions": ["upload"]}),
        lambda c, api: c.put(
            f"{api}/roles/gatekeeper", json={"permissions": ["admin", "read", "orders"]}
        ),
        # A DIMSE peer that may store needs the upload permission.
        lambda c, api: c.put(f"{api}/peers/STORER", json={"host": "127.0.0.1", "port": 104}),
    ],
)
def test_custom_admin_hands_out_only_its_permissions(
    team: Team, call: Callable[[httpx.Client, str], httpx.Response]
) -> None:
    client = httpx.Client(timeout=30, headers=team.auth("custom_admin"))
    answer = call(client, team.api)
    assert answer.status_code == 403, answer.text
    # Nothing changed: viewer keeps its role, ta its rights, no user or role was added.
    root = team.auth("root")
    users = {u["username"]: u for u in team.client.get(f"{team.api}/users", headers=root).json()}
    assert users["viewer"]["role"] == "referring_physician" and "x1" not in users
    roles = {r["name"] for r in team.client.get(f"{team.api}/roles", headers=root).json()}
    assert "bigger" not in roles
    assert team.client.get(f"{team.api}/peers/STORER", headers=root).status_code == 404
    # What the custom admin does hold, it may hand out.
    ok = client.put(f"{team.api}/roles/looker", json={"permissions": ["read"]})
    assert ok.status_code == 201


@pytest.mark.parametrize(
    "call",
    [
        # A user who sees (or uploads to) more than the locked admin.
        lambda c, api: c.post(f"{api}/users", json={"username": "y1", "role": "technologist"}),
        lambda c, api: c.post(
            f"{api}/users",
            json={"username": "y2", "role": "technologist", "sources": ["ClinicB"]},
        ),
        lambda c, api: c.patch(f"{api}/users/la", json={"sources": []}),
        lambda c, api: c.patch(f"{api}/users/la", json={"sources": ["ClinicA", "ClinicB"]}),
        lambda c, api: c.post(f"{api}/api-keys", json={"user": "tech_b"}),
        lambda c, api: c.patch(f"{api}/users/tech_b", json={"password": "x-password-3"}),
        lambda c, api: c.post(f"{api}/api-keys", json={"user": "ta"}),
        # DIMSE peers that query every source or ClinicB, or store into ClinicB.
        lambda c, api: c.put(
            f"{api}/peers/WIDE", json={"host": "127.0.0.1", "port": 104, "upload_source": "ClinicA"}
        ),
        lambda c, api: c.put(
            f"{api}/peers/WIDE",
            json={
                "host": "127.0.0.1",
                "port": 104,
                "upload_source": "ClinicB",
                "query_sources": ["ClinicA"],
            },
        ),
    ],
)
def test_source_locked_admin_cannot_widen_past_its_sources(
    team: Team, call: Callable[[httpx.Client, str], httpx.Response]
) -> None:
    client = httpx.Client(timeout=30, headers=team.auth("la"))
    answer = call(client, team.api)
    assert answer.status_code == 403, answer.text
    root = team.auth("root")
    la = team.client.get(f"{team.api}/users/la", headers=root).json()
    assert la["sources"] == ["ClinicA"]
    assert team.client.get(f"{team.api}/peers/WIDE", headers=root).status_code == 404
    # Within its sources it may act.
    fine = client.post(
        f"{team.api}/users",
        json={
            "username": "clinic_a_tech",
            "role": "technologist",
            "sources": ["ClinicA"],
            "upload_sources": ["ClinicA"],
        },
    )
    assert fine.status_code == 201, fine.text
    peer = {
        "host": "127.0.0.1",
        "port": 104,
        "upload_source": "ClinicA",
        "query_sources": ["ClinicA"],
    }
    assert client.put(f"{team.api}/peers/NARROW", json=peer).status_code == 201


def test_peer_wider_than_the_admin_cannot_be_repointed(team: Team) -> None:
    root, la = team.auth("root"), team.auth("la")
    wide = {"host": "10.0.0.1", "port": 104}
    assert team.client.put(f"{team.api}/peers/PACS", json=wide, headers=root).status_code == 201
    repoint = {
        "host": "127.0.0.1",
        "port": 11113,
        "upload_source": "ClinicA",
        "query_sources": ["ClinicA"],
    }
    assert team.client.put(f"{team.api}/peers/PACS", json=repoint, headers=la).status_code == 403
    assert team.client.delete(f"{team.api}/peers/PACS", headers=la).status_code == 403
    assert team.client.get(f"{team.api}/peers/PACS", headers=root).json()["host"] == "10.0.0.1"


def test_unknown_fields_are_refused_not_ignored(team: Team) -> None:
    """A setting the API does not take (a system flag, a misspelt key) is a 400 naming it,
    and nothing is created or changed: it must not look as if it had been applied."""
    c, api, ta = team.client, team.api, team.auth("ta")
    sneaky = c.post(
        f"{api}/users",
        json={"username": "sneaky", "role": "admin", "password": PASSWORD, "system_admin": True},
        headers=ta,
    )
    assert sneaky.status_code == 400, sneaky.text
    assert "'system_admin'" in sneaky.json()["detail"]
    assert c.get(f"{api}/users/sneaky", headers=ta).status_code == 404

    typo = c.patch(f"{api}/users/viewer", json={"disable": True}, headers=ta)
    assert typo.status_code == 400 and "'disable'" in typo.json()["detail"]
    assert c.get(f"{api}/users/viewer", headers=ta).json()["disabled"] is False

    for method, path, body in (
        ("post", "/api-keys", {"user": "viewer", "scope": "system"}),
        ("post", "/sources", {"name": "ClinicZ", "owner": "ta"}),
        ("put", "/roles/lesser", {"permissions": ["read"], "system": True}),
        ("put", "/peers/PEERX", {"host": "127.0.0.1", "port": 104, "may_admin": True}),
        ("put", "/policies", {"duplicate_policy": "reject", "linked": True}),
    ):
        answer = c.request(method.upper(), f"{api}{path}", json=body, headers=ta)
        assert answer.status_code == 400, (path, answer.text)
        assert "unknown field" in answer.json()["detail"], (path, answer.text)
    assert "ClinicZ" not in [s["name"] for s in c.get(f"{api}/sources", headers=ta).json()]
