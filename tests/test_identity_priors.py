"""Priors over real HTTP and DIMSE: a Patient ID search returns the studies of every linked
identity (QIDO-RS and C-FIND, one query engine), `{api}/patients/{id}/studies` lists a
person's history, and a source-locked caller sees only their sources' studies and never
learns of hidden identities. The worked example of docs/identity.md is the first test."""

from __future__ import annotations

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from tests.identity_support import value
from tests.identity_world import IdentityWorld, build_identity_world

OTHER_IDS = "00101002"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.conftest import PG_URL, create_pg_database, drop_pg_database

    data_dir = tmp_path_factory.mktemp("priors") / "data"
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        url = create_pg_database()
    else:
        url = f"sqlite:///{data_dir.parent / 'index.db'}"
    built = build_identity_world(data_dir, url)
    yield built
    built.server.stop()
    if request.param == "postgresql":
        drop_pg_database(url)


def _qido(world: IdentityWorld, user: str, query: str) -> list[dict]:
    """A study search as a viewer sends it (no includefield: the issuer is returned by
    linked searches; `issuer` below asks for it where the search is an ordinary one)."""
    answer = httpx.get(
        f"{world.server.dicomweb}/studies?{query}", headers=world.auth(user), timeout=60
    )
    assert answer.status_code in (200, 204), answer.text
    return answer.json() if answer.status_code == 200 else []


def _ids(studies: list[dict]) -> list[tuple]:
    """(Patient ID, Issuer, the Other Patient IDs named) of each study, in answer order."""
    out = []
    for study in studies:
        others = study.get(OTHER_IDS, {}).get("Value", [])
        named = sorted((value(o, "00100020"), value(o, "00100021")) for o in others)
        out.append((value(study, "00100020"), value(study, "00100021"), named))
    return out


def _cfind(world: IdentityWorld, peer: str, **keys: object) -> list[Dataset]:
    ae = AE(ae_title=peer)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title="TESSERA")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = identifier.StudyDate = identifier.IssuerOfPatientID = ""
    for keyword, key_value in keys.items():
        setattr(identifier, keyword, key_value)
    found = []
    try:
        for status, ds in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            assert status and status.Status in (0x0000, 0xFF00, 0xFF01), status
            if status.Status in (0xFF00, 0xFF01):
                found.append(ds)
    finally:
        assoc.release()
    return found


def _link(world: IdentityWorld, a: str, b: str) -> None:
    answer = world.post("admin", f"/patients/{world.ids[a]}/links", {"identity": world.ids[b]})
    assert answer.status_code == 201, answer.text


def _unlink_all(world: IdentityWorld) -> None:
    ids = world.ids
    for a, b in (("ed", "center"), ("ed", "hidden"), ("center", "twin")):
        world.delete("admin", f"/patients/{ids[a]}/links/{ids[b]}")


def test_worked_example_emergency_then_specialty_center(world: IdentityWorld) -> None:
    """A child is imaged at a community emergency department (ED-4711, issuer COMMUNITY-ED)
    and at the specialty center the next day (SC-0093, SPECIALTY-CTR): once the two
    identities are linked, the reading physician's priors query finds both studies."""
    ed, center = world.ids["ed"], world.ids["center"]
    assert _ids(_qido(world, "reader", "00100020=SC-0093&includefield=00100021")) == [
        ("SC-0093", "SPECIALTY-CTR", [])
    ]
    proposals = world.get("admin", f"/patients/{center}/candidates").json()
    assert proposals[0]["identity"]["id"] == ed and proposals[0]["score"] == 0.8
    _link(world, "center", "ed")
    try:
        both = [
            ("SC-0093", "SPECIALTY-CTR", [("ED-4711", "COMMUNITY-ED")]),
            ("ED-4711", "COMMUNITY-ED", [("SC-0093", "SPECIALTY-CTR")]),
        ]
        # Newest first, each study with its own Patient ID and Issuer, links named.
        assert _ids(_qido(world, "reader", "00100020=SC-0093")) == both
        assert (
            _ids(_qido(world, "reader", "PatientID=SC-0093&IssuerOfPatientID=SPECIALTY-CTR"))
            == both
        )
        assert _ids(_qido(world, "reader", "PatientID=ED-4711")) == both
        # The issuer still qualifies the seed; other keys still narrow the answer.
        assert _qido(world, "reader", "PatientID=SC-0093&IssuerOfPatientID=COMMUNITY-ED") == []
        assert _ids(_qido(world, "reader", "PatientID=ED-4711&StudyDate=20260302")) == both[:1]
        # A wildcard Patient ID is an ordinary search, not a linked one.
        assert [s[0] for s in _ids(_qido(world, "reader", "PatientID=SC-0093*"))] == ["SC-0093"]
        # The person's history over the API.
        history = world.get("reader", f"/patients/{center}/studies")
        assert history.status_code == 200 and _ids(history.json()) == both
        assert value(history.json()[1], "0020000D") == world.studies["ed"]
        # C-FIND runs the same engine.
        found = _cfind(world, "PEER_ALL", PatientID="SC-0093", OtherPatientIDsSequence=[])
        assert sorted((d.PatientID, d.IssuerOfPatientID) for d in found) == [
            ("ED-4711", "COMMUNITY-ED"),
            ("SC-0093", "SPECIALTY-CTR"),
        ]
        named = {
            d.PatientID: [(o.PatientID, o.IssuerOfPatientID) for o in d.OtherPatientIDsSequence]
            for d in found
        }
        assert named == {
            "SC-0093": [("ED-4711", "COMMUNITY-ED")],
            "ED-4711": [("SC-0093", "SPECIALTY-CTR")],
        }
        # The tenant can turn linked matching off.
        off = httpx.put(
            f"{world.api()}/policies", json={"linked_matching": False}, headers=world.auth("admin")
        )
        assert off.status_code == 200 and off.json()["linked_matching"] is False
        try:
            assert _ids(_qido(world, "reader", "00100020=SC-0093&includefield=00100021")) == [
                ("SC-0093", "SPECIALTY-CTR", [])
            ]
            assert len(_cfind(world, "PEER_ALL", PatientID="SC-0093")) == 1
            # The history endpoint lists the person's studies whatever the setting.
            assert len(world.get("reader", f"/patients/{center}/studies").json()) == 2
        finally:
            httpx.put(
                f"{world.api()}/policies",
                json={"linked_matching": True},
                headers=world.auth("admin"),
            )
    finally:
        _unlink_all(world)
    # Unlinked again: one study, as before.
    assert _ids(_qido(world, "reader", "00100020=SC-0093&includefield=00100021")) == [
        ("SC-0093", "SPECIALTY-CTR", [])
    ]


def test_locked_caller_gets_only_their_sources_priors(world: IdentityWorld) -> None:
    _link(world, "ed", "center")
    _link(world, "ed", "hidden")
    try:
        # The unlocked reader sees the whole person.
        assert len(_qido(world, "reader", "PatientID=ED-4711")) == 3
        # Locked to the emergency department: its own study only, no trace of the others.
        for query in ("PatientID=ED-4711", "PatientID=ED-4711&IssuerOfPatientID=COMMUNITY-ED"):
            answer = httpx.get(
                f"{world.server.dicomweb}/studies?{query}&includefield=all",
                headers=world.auth("ed_reader"),
                timeout=60,
            )
            assert answer.status_code == 200
            assert _ids(answer.json()) == [("ED-4711", "COMMUNITY-ED", [])]
            for word in (
                "SC-0093",
                "HS-1",
                "SPECIALTY-CTR",
                "HIDDEN-SITE",
                world.studies["center"],
            ):
                assert word not in answer.text
        # Asking for a hidden identity's ID finds nothing, linked or not.
        for hidden_id in ("SC-0093", "HS-1"):
            assert _qido(world, "ed_reader", f"PatientID={hidden_id}") == []
            assert _cfind(world, "PEER_ED", PatientID=hidden_id) == []
        found = _cfind(world, "PEER_ED", PatientID="ED-4711")
        assert [(d.PatientID, d.IssuerOfPatientID) for d in found] == [("ED-4711", "COMMUNITY-ED")]
        assert "OtherPatientIDsSequence" not in found[0]
        history = world.get("ed_reader", f"/patients/{world.ids['ed']}/studies")
        assert history.status_code == 200 and _ids(history.json()) == [
            ("ED-4711", "COMMUNITY-ED", [])
        ]
        assert world.get("ed_reader", f"/patients/{world.ids['center']}/studies").status_code == 404
        # Another tenant's same local ID is never part of this tenant's person.
        acme = httpx.get(
            f"{world.server.base_url}/t/acme/dicomweb/studies?PatientID=ED-4711",
            headers=world.auth("acme_admin"),
            timeout=60,
        ).json()
        assert _ids(acme) == [("ED-4711", None, [])]
    finally:
        _unlink_all(world)
