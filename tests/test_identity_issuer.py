"""Issuer-qualified identity over real HTTP: a source's default Issuer of Patient ID keeps two
sites' identical local Patient IDs apart, Other Patient IDs are recorded as candidates, and
concurrent uploads of one new identity never create two patients."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ServerProcess, index_rows
from tests.identity_support import instance, qido, stow, value


@pytest.fixture
def server(server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A server (the machine is loaded: a longer start allowance than conftest's)."""
    return server_factory().start(timeout=120)


PATIENT_ID = "00100020"
ISSUER = "00100021"


def _sources(server: ServerProcess) -> str:
    api = f"{server.base_url}/api/v1"
    for name, issuer in (("ClinicER", "ER-HOSP"), ("Center", "")):
        created = httpx.post(
            f"{api}/sources",
            json={"name": name, "default_issuer_of_patient_id": issuer},
            timeout=30,
        )
        assert created.status_code == 201, created.text
    return api


def test_default_issuer_keeps_sites_apart(server: ServerProcess) -> None:
    api = _sources(server)
    # The issuer is a source setting, changed over PATCH, and applies to later uploads.
    patched = httpx.patch(
        f"{api}/sources/Center", json={"default_issuer_of_patient_id": "CENTER"}, timeout=30
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {
        "name": "Center",
        "description": "",
        "default_issuer_of_patient_id": "CENTER",
    }
    listed = {s["name"]: s for s in httpx.get(f"{api}/sources", timeout=30).json()}
    assert listed["ClinicER"]["default_issuer_of_patient_id"] == "ER-HOSP"

    assert stow(server, [instance("12345", name="ER^CHILD")], source="ClinicER").status_code == 200
    assert stow(server, [instance("12345", name="CTR^ADULT")], source="Center").status_code == 200
    # An instance's own issuer wins over its source's default.
    assert stow(server, [instance("12345", issuer="LAB")], source="Center").status_code == 200
    # A source without a default issuer leaves it empty, as before.
    assert stow(server, [instance("12345")]).status_code == 200

    patients = index_rows(
        server.database_url,
        "SELECT patient_id, issuer_of_patient_id, patient_name FROM patient ORDER BY id",
    )
    assert [tuple(p) for p in patients] == [
        ("12345", "ER-HOSP", "ER^CHILD"),
        ("12345", "CENTER", "CTR^ADULT"),
        ("12345", "LAB", "DOE^JANE"),
        ("12345", "", "DOE^JANE"),
    ]
    found = qido(server, "/studies?PatientID=12345&includefield=IssuerOfPatientID")
    assert sorted(value(s, ISSUER) or "" for s in found) == ["", "CENTER", "ER-HOSP", "LAB"]
    only_er = qido(server, "/studies?PatientID=12345&IssuerOfPatientID=ER-HOSP")
    assert [value(s, ISSUER) for s in only_er] == ["ER-HOSP"]
    assert [value(s, PATIENT_ID) for s in only_er] == ["12345"]


MALFORMED = [
    ({"default_issuer_of_patient_id": "A\\B"}, "backslash"),
    ({"default_issuer_of_patient_id": "x" * 65}, "64 characters"),
    ({"default_issuer_of_patient_id": " LEAD"}, "spaces"),
    ({"default_issuer_of_patient_id": "A\x01"}, "control"),
    ({"default_issuer_of_patient_id": 7}, "must be a str"),
    ({"default_issuer_of_patient_id": None}, "required"),
    ({}, "default_issuer_of_patient_id"),
]


def test_malformed_issuer_is_refused(server: ServerProcess) -> None:
    api = _sources(server)
    for body, word in MALFORMED:
        answer = httpx.patch(f"{api}/sources/ClinicER", json=body, timeout=30)
        assert answer.status_code == 400 and word in answer.json()["detail"], answer.text
    refused = httpx.post(
        f"{api}/sources", json={"name": "Bad", "default_issuer_of_patient_id": "A\\B"}, timeout=30
    )
    assert refused.status_code == 400 and "backslash" in refused.json()["detail"]
    unchanged = {s["name"]: s for s in httpx.get(f"{api}/sources", timeout=30).json()}
    assert unchanged["ClinicER"]["default_issuer_of_patient_id"] == "ER-HOSP"
    missing = httpx.patch(
        f"{api}/sources/Nowhere", json={"default_issuer_of_patient_id": "X"}, timeout=30
    )
    assert missing.status_code == 404


def test_other_patient_ids_are_recorded_as_candidates(server: ServerProcess) -> None:
    _sources(server)
    part = instance("ER-77", others=(("MRN-5", "CENTER"), ("LOCAL-9", None), ("", "X")))
    assert stow(server, [part], source="ClinicER").status_code == 200
    rows = index_rows(
        server.database_url,
        "SELECT p.patient_id, p.issuer_of_patient_id, o.patient_id, o.issuer_of_patient_id, "
        "s.name FROM other_patient_id o JOIN patient p ON p.id = o.patient_pk "
        "JOIN source s ON s.id = o.source_pk ORDER BY o.id",
    )
    # An item without an issuer takes the source's default; an item without an ID is skipped.
    assert [tuple(r) for r in rows] == [
        ("ER-77", "ER-HOSP", "MRN-5", "CENTER", "ClinicER"),
        ("ER-77", "ER-HOSP", "LOCAL-9", "ER-HOSP", "ClinicER"),
    ]


def test_parallel_uploads_of_one_new_identity_make_one_patient(server_factory) -> None:  # type: ignore[no-untyped-def]
    # Several HTTP worker processes take the uploads at once.
    server = server_factory(env_extra={"TESSERA_WORKERS": "3"}).start(timeout=120)
    _sources(server)
    parts = [instance("RACE-1", study_uid=None) for _ in range(24)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda p: stow(server, [p], source="ClinicER"), parts))
    assert [a.status_code for a in answers] == [200] * 24
    patients = index_rows(
        server.database_url,
        "SELECT count(*) FROM patient WHERE patient_id = 'RACE-1' AND issuer_of_patient_id = 'ER-HOSP'",
    )
    assert patients[0][0] == 1
    studies = index_rows(server.database_url, "SELECT count(DISTINCT patient_pk) FROM study")
    assert studies[0][0] == 1
