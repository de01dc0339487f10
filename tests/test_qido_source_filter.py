"""QIDO-RS `source=` (tessera's extension, docs/qido.md): only instances received from the
named sources, always within the caller's source lock; a hidden or unknown source narrows to
nothing rather than telling itself apart. Over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
from pydicom.uid import generate_uid

from tests.conftest import ServerProcess
from tests.security_world import PASSWORD, admin_cli, instance_bytes, stow

STUDY_UID = "0020000D"
INSTANCES = "00201208"


def test_search_narrowed_to_sources(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = server_factory(
        env_extra={"TESSERA_ANONYMOUS": "off", "TESSERA_WORKERS": "1"}
    )
    server.data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--password", PASSWORD)
    server.start()
    api, web = f"{server.base_url}/api/v1", server.dicomweb
    admin = {"Authorization": f"Bearer {boot['api_key']}"}
    for source in ("ClinicA", "ClinicB"):
        assert httpx.post(f"{api}/sources", json={"name": source}, headers=admin).is_success
    locked = {"username": "locked", "role": "referring_physician", "password": PASSWORD}
    locked["sources"] = ["ClinicA"]  # type: ignore[assignment]
    assert httpx.post(f"{api}/users", json=locked, headers=admin).status_code == 201

    def store(study: str, source: str, count: int) -> None:
        series = generate_uid()
        parts = [instance_bytes(study, series, generate_uid(), "SRC^PAT", n) for n in range(count)]
        assert stow(web, parts, admin, source=source).status_code == 200

    only_a, only_b, both = generate_uid(), generate_uid(), generate_uid()
    store(only_a, "ClinicA", 1)
    store(only_b, "ClinicB", 1)
    store(both, "ClinicA", 2)
    store(both, "ClinicB", 3)

    def search(params: dict, auth: dict | tuple = admin, path: str = "/studies") -> dict:
        kwargs = {"auth": auth} if isinstance(auth, tuple) else {"headers": auth}
        response = httpx.get(
            f"{web}{path}",
            params=params,
            **kwargs,  # type: ignore[arg-type]
        )
        assert response.status_code == 200, response.text
        return {
            s[STUDY_UID]["Value"][0]: s.get(INSTANCES, {}).get("Value", [None])[0]
            for s in response.json()
        }

    # Narrowed: the studies with an instance from the source, counted from that source only.
    assert search({"source": "ClinicA"}) == {only_a: 1, both: 2}
    assert search({"source": "ClinicB"}) == {only_b: 1, both: 3}
    assert search({"source": "ClinicA,ClinicB"}) == {only_a: 1, only_b: 1, both: 5}
    assert search({"source": ["ClinicA", "ClinicB"]}) == search({})
    # With other keys, and at the series and instance levels.
    assert search({"source": "ClinicB", "StudyInstanceUID": both}) == {both: 3}
    assert (
        len(
            httpx.get(
                f"{web}/studies/{both}/instances", params={"source": "ClinicB"}, headers=admin
            ).json()
        )
        == 3
    )
    assert search({"source": "default"}) == {}
    assert search({"source": "Nowhere"}) == {}

    # A source-locked user: never beyond the lock, and a hidden source looks like no source.
    viewer = ("locked", PASSWORD)
    assert search({}, viewer) == {only_a: 1, both: 2}
    assert search({"source": "ClinicA"}, viewer) == {only_a: 1, both: 2}
    assert search({"source": "ClinicB"}, viewer) == {}
    assert search({"source": "ClinicA,ClinicB"}, viewer) == {only_a: 1, both: 2}
    assert search({"source": "Nowhere"}, viewer) == {}
    # Ordered and paged (`orderby=`, read on the per-source rows): still only the lock's.
    for orderby in ("-StudyDate", "PatientID", "-AccessionNumber"):
        whole = list(search({"orderby": orderby}, viewer))
        paged = [
            uid
            for offset in range(3)
            for uid in search({"orderby": orderby, "limit": 1, "offset": offset}, viewer)
        ]
        assert sorted(whole) == sorted([only_a, both]) and paged == whole

    # Malformed: 400 naming the parameter.
    for bad in ("", "Clinic A", ",", "x" * 65):
        response = httpx.get(f"{web}/studies", params={"source": bad}, headers=admin)
        assert response.status_code == 400 and "source" in response.json()["detail"], response.text
