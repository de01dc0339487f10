"""A populated archive for the security and accounts tests (a real server process).

Two tenants, `default` and `acme`, hold studies with IDENTICAL UIDs but different content
(the patient name carries the tenant's marker). In `default`, sources ClinicA and ClinicB:

    study S1: series A1 / instance a1                     (ClinicA)
    study S2: series B2 / instance b2                     (ClinicB)
    study S3: series A3 / instance a3 (ClinicA) + series B3 / instance b3 (ClinicB)
    study S4: series M4 / instance b4 (ClinicB) + instance a4 (ClinicA), one series

(uploaded in that order: in S3 ClinicA comes first, in S4 ClinicB). In `default` every
instance carries its source's own patient, study and series values (`SOURCE_VALUES`: names,
IDs, accession number, descriptions, dates), so a value of a hidden source in an answer is
a leak the tests can see.

Users of `default`: admin (bootstrap, system administrator), tech (technologist, sees and
uploads ClinicA only), ref_a (referring physician locked to ClinicA), read_b (reading
physician locked to ClinicB), nobody (a custom role with no permissions). In `acme`:
acme_admin. Each user has an API key; passwords are known for Basic and login tests.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, free_port

PASSWORD = "correct-horse-battery"
DEFAULT_MARKER = "DEFAULTTENANT^PATIENT"
ACME_MARKER = "ACMETENANT^PATIENT"
# The values each source of `default` writes; every string value holds the source's token.
SOURCE_TOKEN = {"ClinicA": "ALFA", "ClinicB": "BRAVO"}
SOURCE_VALUES: dict[str, dict[str, str]] = {
    source: {
        "PatientName": f"{DEFAULT_MARKER}^{token}",
        "PatientID": f"PID-{token}",
        "PatientBirthDate": birth_date,
        "AccessionNumber": f"ACC-{token}",
        "StudyID": f"ID-{token}",
        "StudyDescription": f"STUDY {token}",
        "StudyDate": study_date,
        "ReferringPhysicianName": f"REFERRER^{token}",
        "SeriesDescription": f"SERIES {token}",
        "BodyPartExamined": f"PART{token}",
    }
    for source, token, birth_date, study_date in (
        ("ClinicA", "ALFA", "19800101", "20200202"),
        ("ClinicB", "BRAVO", "19900202", "20210303"),
    )
}


@dataclass(frozen=True)
class Obj:
    """One stored instance and where it sits."""

    name: str
    study: str
    series: str
    instance: str
    source: str


@dataclass
class World:
    server: ServerProcess
    objects: list[Obj]
    keys: dict[str, str] = field(default_factory=dict)  # user -> API key
    # The bytes stored in `default` for each object name.
    stored: dict[str, bytes] = field(default_factory=dict)
    dimse_port: int = 0
    # Where the C-MOVE destination MOVE_DEST (a peer of every tenant's test) listens.
    move_port: int = 0
    # DIMSE peers of `default` -> the sources they may query (None: all); see build_world.
    peer_sees: dict[str, frozenset[str] | None] = field(default_factory=dict)
    # Which sources each user of `default` sees (None: all).
    sees: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def url(self, tenant: str = "default") -> str:
        base = self.server.base_url
        return f"{base}/dicomweb" if tenant == "default" else f"{base}/t/{tenant}/dicomweb"

    def api(self, tenant: str = "default") -> str:
        base = self.server.base_url
        return f"{base}/api/v1" if tenant == "default" else f"{base}/t/{tenant}/api/v1"

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}

    def visible(self, user: str, obj: Obj) -> bool:
        sources = self.sees[user]
        return sources is None or obj.source in sources


def instance_bytes(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    marker: str,
    number: int,
    values: dict[str, str] | None = None,
) -> bytes:
    data = ct_image(
        StudySpec(patient_name=marker, study_instance_uid=study_uid), series_uid, number, 16, 16
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SeriesDescription = f"{marker} {series_uid[-6:]}"
    for keyword, value in (values or {}).items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def stow(
    url: str, parts: list[bytes], headers: dict[str, str], source: str | None = None
) -> httpx.Response:
    boundary = multipart_writer.new_boundary()
    params = {"source": source} if source else None
    return httpx.post(
        f"{url}/studies",
        params=params,
        content=multipart_writer.body(boundary, parts),
        headers={
            **headers,
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )


def migrate_cli(server: ServerProcess) -> None:
    """`tessera migrate` on the server's index (only serve, scp, migrate and admin bootstrap
    migrate; the other commands need it done)."""
    env = dict(os.environ)
    env.update(TESSERA_DATABASE_URL=server.database_url, TESSERA_DATA_DIR=str(server.data_dir))
    subprocess.run(
        [sys.executable, "-m", "tessera.cli", "migrate"], env=env, check=True, capture_output=True
    )


def admin_cli(server: ServerProcess, *args: str) -> dict:
    env = dict(os.environ)
    env.update(TESSERA_DATABASE_URL=server.database_url, TESSERA_DATA_DIR=str(server.data_dir))
    out = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "admin", *args, "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def build_world(
    data_dir: Path,
    database_url: str,
    env: dict[str, str] | None = None,
    start_timeout: float = 120,
) -> World:
    dimse_port = free_port()
    server = ServerProcess(
        data_dir=data_dir,
        database_url=database_url,
        env_extra={
            "TESSERA_ANONYMOUS": "off",
            "TESSERA_WORKERS": "2",
            "TESSERA_DIMSE_PORT": str(dimse_port),
            **(env or {}),
        },
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    try:
        server.start(timeout=start_timeout)  # generous: CI machines are shared
        return _populate(server, boot, dimse_port, data_dir, database_url)
    except BaseException:
        server.stop()  # a half-built world's server must not outlive its test
        raise


def _populate(
    server: ServerProcess, boot: dict, dimse_port: int, data_dir: Path, database_url: str
) -> World:
    world = World(server, [], keys={"admin": boot["api_key"]}, dimse_port=dimse_port)
    admin = world.auth("admin")
    api = world.api()

    def ok(response: httpx.Response) -> dict:
        assert response.status_code < 300, response.text
        return response.json() if response.content else {}

    for source in ("ClinicA", "ClinicB"):
        ok(httpx.post(f"{api}/sources", json={"name": source}, headers=admin))
    ok(httpx.put(f"{api}/roles/nobody", json={"permissions": []}, headers=admin))
    users = {
        "tech": ("technologist", ["ClinicA"], ["ClinicA"]),
        "ref_a": ("referring_physician", ["ClinicA"], []),
        "read_b": ("reading_physician", ["ClinicB"], []),
        "nobody": ("nobody", [], []),
    }
    for username, (role, sources, upload_sources) in users.items():
        ok(
            httpx.post(
                f"{api}/users",
                json={
                    "username": username,
                    "role": role,
                    "password": PASSWORD,
                    "sources": sources,
                    "upload_sources": upload_sources,
                },
                headers=admin,
            )
        )
        world.keys[username] = ok(
            httpx.post(f"{api}/api-keys", json={"user": username, "name": "tests"}, headers=admin)
        )["key"]
        world.sees[username] = frozenset(sources) if sources else None
    world.sees["admin"] = None

    ok(
        httpx.post(
            f"{api}/tenants",
            json={"name": "acme", "admin": {"username": "acme_admin", "password": PASSWORD}},
            headers=admin,
        )
    )
    login = ok(
        httpx.post(
            f"{world.api('acme')}/login", json={"username": "acme_admin", "password": PASSWORD}
        )
    )
    acme_auth = {"Authorization": f"Bearer {login['access_token']}"}
    world.keys["acme_admin"] = ok(
        httpx.post(
            f"{world.api('acme')}/api-keys",
            json={"user": "acme_admin", "name": "tests"},
            headers=acme_auth,
        )
    )["key"]

    # DIMSE: peers of `default` with their query sources; the called AE title ACME selects
    # the acme tenant, where only ACME_PEER is registered.
    for title, sources in (("PEER_ALL", []), ("PEER_A", ["ClinicA"]), ("PEER_B", ["ClinicB"])):
        body = {"host": "127.0.0.1", "port": 0, "query_sources": sources}
        if sources:
            body["upload_source"] = sources[0]
        ok(httpx.put(f"{api}/peers/{title}", json=body, headers=admin))
        world.peer_sees[title] = frozenset(sources) if sources else None
    world.move_port = free_port()
    ok(
        httpx.put(
            f"{api}/peers/MOVE_DEST",
            json={"host": "127.0.0.1", "port": world.move_port, "may_query": False},
            headers=admin,
        )
    )
    ok(httpx.put(f"{api}/ae-titles/ACME", json={"tenant": "acme"}, headers=admin))
    for title, port in (("ACME_PEER", 0), ("MOVE_DEST", world.move_port)):
        ok(
            httpx.put(
                f"{world.api('acme')}/peers/{title}",
                json={"host": "127.0.0.1", "port": port},
                headers=world.auth("acme_admin"),
            )
        )

    s1, s2, s3, s4 = (generate_uid() for _ in range(4))
    m4 = generate_uid()
    layout = [
        ("a1", s1, generate_uid(), "ClinicA"),
        ("b2", s2, generate_uid(), "ClinicB"),
        ("a3", s3, generate_uid(), "ClinicA"),
        ("b3", s3, generate_uid(), "ClinicB"),
        ("b4", s4, m4, "ClinicB"),
        ("a4", s4, m4, "ClinicA"),
    ]
    for number, (name, study_uid, series_uid, source) in enumerate(layout, start=1):
        obj = Obj(name, study_uid, series_uid, generate_uid(), source)
        world.objects.append(obj)
        for tenant, marker, headers, src, values in (
            ("default", DEFAULT_MARKER, admin, source, SOURCE_VALUES[source]),
            ("acme", ACME_MARKER, world.auth("acme_admin"), None, None),
        ):
            data = instance_bytes(obj.study, obj.series, obj.instance, marker, number, values)
            if tenant == "default":
                world.stored[name] = data
            response = stow(world.url(tenant), [data], headers, src)
            assert response.status_code == 200, response.text
    return world
