"""A server with two sites' identities of one child, a hidden site, users of several rights
and a second tenant: the world of the identity tests (docs/identity.md's worked example)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import ServerProcess, free_port
from tests.identity_support import instance, stow
from tests.security_world import PASSWORD, admin_cli

# (source, default issuer) of each site.
SITES = {"CommunityED": "COMMUNITY-ED", "Specialty": "SPECIALTY-CTR", "Hidden": "HIDDEN-SITE"}
# name -> (source, Patient ID, name, birth date, sex, study date)
PATIENTS = {
    "ed": ("CommunityED", "ED-4711", "MILLER^NOAH", "20200505", "M", "20260301"),
    "center": ("Specialty", "SC-0093", "Miller^Noah", "20200505", "M", "20260302"),
    "twin": ("Specialty", "SC-0094", "MILLER^NOAH", "20200506", "M", "20260302"),
    "hidden": ("Hidden", "HS-1", "MILLER^NOAH", "20200505", "M", "20250101"),
}


@dataclass
class IdentityWorld:
    server: ServerProcess
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    studies: dict[str, str] = field(default_factory=dict)
    dimse_port: int = 0

    def api(self, tenant: str = "default") -> str:
        root = "" if tenant == "default" else f"/t/{tenant}"
        return f"{self.server.base_url}{root}/api/v1"

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}

    def get(self, user: str, path: str, tenant: str = "default") -> httpx.Response:
        return httpx.get(f"{self.api(tenant)}{path}", headers=self.auth(user), timeout=60)

    def post(self, user: str, path: str, body: dict, tenant: str = "default") -> httpx.Response:
        return httpx.post(
            f"{self.api(tenant)}{path}", json=body, headers=self.auth(user), timeout=60
        )

    def delete(self, user: str, path: str) -> httpx.Response:
        return httpx.delete(f"{self.api()}{path}", headers=self.auth(user), timeout=60)


def _ok(response: httpx.Response) -> dict:
    assert response.status_code < 300, response.text
    return response.json() if response.content else {}


def build_identity_world(data_dir: Path, database_url: str) -> IdentityWorld:
    dimse_port = free_port()
    server = ServerProcess(
        data_dir=data_dir,
        database_url=database_url,
        env_extra={
            "TESSERA_ANONYMOUS": "off",
            "TESSERA_WORKERS": "1",
            "TESSERA_DIMSE_PORT": str(dimse_port),
            # Routing tests send to this server's other tenant (a loopback address).
            "TESSERA_OUTBOUND_ALLOW_PRIVATE": "true",
        },
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    server.start(timeout=120)
    world = IdentityWorld(server, keys={"admin": boot["api_key"]}, dimse_port=dimse_port)
    admin = world.auth("admin")
    api = world.api()
    for name, issuer in SITES.items():
        _ok(
            httpx.post(
                f"{api}/sources",
                json={"name": name, "default_issuer_of_patient_id": issuer},
                headers=admin,
            )
        )
    _ok(
        httpx.put(
            f"{api}/roles/registrar", json={"permissions": ["read", "identity"]}, headers=admin
        )
    )
    users = {
        "registrar": ("registrar", []),
        "ed_registrar": ("registrar", ["CommunityED"]),
        "ed_reader": ("referring_physician", ["CommunityED"]),
        "reader": ("referring_physician", []),
    }
    for username, (role, sources) in users.items():
        body = {"username": username, "role": role, "password": PASSWORD, "sources": sources}
        _ok(httpx.post(f"{api}/users", json=body, headers=admin))
        world.keys[username] = _ok(
            httpx.post(f"{api}/api-keys", json={"user": username}, headers=admin)
        )["key"]
    # DIMSE peers: one that queries every source, one locked to the emergency department.
    for title, sources in (("PEER_ALL", []), ("PEER_ED", ["CommunityED"])):
        body = {"host": "127.0.0.1", "port": 0, "query_sources": sources}
        _ok(httpx.put(f"{api}/peers/{title}", json=body, headers=admin))
    _ok(
        httpx.post(
            f"{api}/tenants",
            json={"name": "acme", "admin": {"username": "acme_admin", "password": PASSWORD}},
            headers=admin,
        )
    )
    login = _ok(
        httpx.post(
            f"{world.api('acme')}/login", json={"username": "acme_admin", "password": PASSWORD}
        )
    )
    world.keys["acme_admin"] = login["access_token"]

    for key, (source, patient_id, name, birth, sex, study_date) in PATIENTS.items():
        part = instance(patient_id, name=name, birth_date=birth, sex=sex, study_date=study_date)
        answer = stow(server, [part], source=source, headers=admin)
        assert answer.status_code == 200, answer.text
        world.studies[key] = answer.json()["00081190"]["Value"][0].rsplit("/", 1)[-1]
        found = _ok(httpx.get(f"{api}/patients", params={"patient_id": patient_id}, headers=admin))
        world.ids[key] = found[0]["id"]
    # The other tenant holds an identity with the same local ID as the ED's.
    part = instance("ED-4711", name="MILLER^NOAH", birth_date="20200505", sex="M")
    assert (
        stow(
            server,
            [part],
            headers=world.auth("acme_admin"),
            root=f"{server.base_url}/t/acme/dicomweb",
        ).status_code
        == 200
    )
    world.ids["acme"] = _ok(world.get("acme_admin", "/patients?patient_id=ED-4711", "acme"))[0][
        "id"
    ]
    return world
