"""After images attach to an order, the PATIENT level shows the order's identity like the
study level does (docs/orders.md "Coercion"): C-FIND at PATIENT level (Patient Root) and
`{api}/patients`, over a real `tessera serve` (SQLite and PostgreSQL). The order's source's
callers (a peer and a user locked to ClinicA, and those who see every source) find the
order's Patient ID, name, birth date and sex; a ClinicB peer or user and another tenant
neither see nor match them; the modality's typed values no longer match anywhere."""

from __future__ import annotations

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PatientRootFind

from tests.dimse_support import SERVER_AET
from tests.security_world import World, instance_bytes, stow
from tests.world import DATABASES, add_user, patient_order, served_world


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    # start_timeout: the machine may be loaded.
    with served_world(request.param, tmp_path_factory, "patient-level", start_timeout=600) as built:
        # ident_a / ident_b: may read and look up identities, locked to ClinicA / ClinicB.
        response = httpx.put(
            f"{built.api()}/roles/identity_reader",
            json={"permissions": ["read", "identity"]},
            headers=built.auth("admin"),
        )
        assert response.status_code < 300, response.text
        add_user(built, "ident_a", "identity_reader", ["ClinicA"])
        add_user(built, "ident_b", "identity_reader", ["ClinicB"])
        yield built


def _send_for(world: World, order: dict, patient_id: str) -> None:
    """ClinicA's modality sends the order's study with its own typed patient values."""
    typed = {
        "PatientName": "MODALITY^TYPED",
        "PatientID": patient_id,
        "PatientBirthDate": "19990101",
        "PatientSex": "M",
        "AccessionNumber": "MOD-ACC",
    }
    data = instance_bytes(
        order["study_instance_uid"], generate_uid(), generate_uid(), "MODALITY^TYPED", 1, typed
    )
    response = stow(world.url(), [data], world.auth("admin"), "ClinicA")
    assert response.status_code == 200, response.text


def _patients(
    world: World, calling: str, called: str = SERVER_AET, **keys: str
) -> list[tuple[str, str, str, str]]:
    """PATIENT level C-FIND (Patient Root): (name, ID, birth date, sex) of each match."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientName = ""
    identifier.PatientID = ""
    identifier.PatientBirthDate = ""
    identifier.PatientSex = ""
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    ae = AE(ae_title=calling)
    ae.add_requested_context(PatientRootFind)
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title=called)
    assert assoc.is_established
    found, final = [], None
    try:
        for status, ds in assoc.send_c_find(identifier, PatientRootFind):
            if status.Status in (0xFF00, 0xFF01):
                found.append(
                    (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.PatientSex)
                )
            else:
                final = status.Status
    finally:
        assoc.release()
    assert final == 0x0000
    return found


def _identities(world: World, user: str, patient_id: str, tenant: str = "default") -> list:
    response = httpx.get(
        f"{world.api(tenant)}/patients",
        params={"patient_id": patient_id},
        headers=world.auth(user),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [
        (i["patient_name"], i["patient_id"], i["patient_birth_date"], i["patient_sex"])
        for i in response.json()
    ]


@pytest.mark.parametrize(
    ("accession", "received_id"),
    [
        ("PL-NEWKEY", ""),  # the modality typed no Patient ID: the order's is another row
        ("PL-SAMEKEY", "MRN-PL-SAMEKEY"),  # the same Patient ID, other demographics
    ],
)
def test_patient_level_shows_the_order(world: World, accession: str, received_id: str) -> None:
    patient_id = f"MRN-{accession}"
    order = patient_order(world, accession)
    _send_for(world, order, received_id)
    shown = (order["patient_name"], patient_id, "19700506", "F")

    for peer in ("PEER_ALL", "PEER_A"):  # every source, and locked to the order's source
        assert _patients(world, peer, PatientID=patient_id) == [shown]
        assert _patients(world, peer, PatientName=f"*{accession}") == [shown]
        assert _patients(world, peer, PatientName="MODALITY^TYPED") == []
    for user in ("admin", "ident_a"):
        assert _identities(world, user, patient_id) == [(shown[0], patient_id, "1970-05-06", "F")]

    # ClinicB and another tenant: nothing of it, not even by the order's values.
    for keys in (
        {"PatientID": patient_id},
        {"PatientName": f"*{accession}"},
        {"PatientName": "MODALITY^TYPED"},
    ):
        assert _patients(world, "PEER_B", **keys) == []
        assert _patients(world, "ACME_PEER", "ACME", **keys) == []
    assert _identities(world, "ident_b", patient_id) == []
    assert _identities(world, "acme_admin", patient_id, "acme") == []


def test_shared_study_changes_nothing_of_the_other_source(world: World) -> None:
    """s3 holds instances of ClinicA (PID-ALFA) and ClinicB (PID-BRAVO): an order of ClinicA
    for PID-ALFA attached to it shows its values for PID-ALFA to those who see ClinicA;
    ClinicB's patients (C-FIND and identities) stay exactly as they were."""
    a3 = next(o for o in world.objects if o.name == "a3")
    before_peer_b = _patients(world, "PEER_B", PatientID="*")
    before_ident_b = _identities(world, "ident_b", "PID-BRAVO")
    order = patient_order(world, "PL-SHARED", patient_id="PID-ALFA")
    attach = httpx.post(
        f"{world.api()}/orders/{order['id']}/study",
        json={"study_instance_uid": a3.study},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert attach.status_code == 200, attach.text
    assert _patients(world, "PEER_ALL", PatientID="PID-ALFA") == [
        (order["patient_name"], "PID-ALFA", "19700506", "F")
    ]
    assert _patients(world, "PEER_B", PatientID="*") == before_peer_b
    assert _patients(world, "PEER_B", PatientName="*PL-SHARED") == []
    assert _identities(world, "ident_b", "PID-BRAVO") == before_ident_b
    assert _identities(world, "ident_b", "PID-ALFA") == []
