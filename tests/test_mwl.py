"""The Modality Worklist C-FIND SCP against a real `tessera serve`, queried with dcmtk's
`findscu -W` and a pynetdicom SCU: matching on the Scheduled Procedure Step Sequence, names
case-insensitively, date and time ranges; what comes back; and per-peer, per-source and
per-tenant visibility (a peer never sees another source's or tenant's worklist)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from tests.dimse_support import SERVER_AET, dcmtk, wait_port
from tests.security_world import World
from tests.world import DATABASES, post_order, served_world

ORDERS = {
    # accession: (source, patient name, patient id, modality, station, start)
    "MWL1": ("ClinicA", "Müller^Hans", "PA1", "CT", "CT1", "2026-12-01T09:00:00"),
    "MWL2": ("ClinicA", "SMITH^JOHN", "PA2", "MR", "MR1", "2026-12-01T14:00:00"),
    "MWL3": ("ClinicB", "Smithers^Anna", "PB3", "CT", "CT1", "2026-12-02T10:00:00"),
    "MWL4": ("ClinicA", "GONE^CANCELLED", "PA4", "CT", "CT1", "2026-12-01T09:30:00"),
}


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "mwl") as built:
        wait_port(built.dimse_port)
        api, admin = built.api(), built.auth("admin")
        built.orders = {}  # type: ignore[attr-defined]
        for accession, (source, name, pid, modality, station, start) in ORDERS.items():
            step = {
                "scheduled_procedure_step_id": "SPS-" + accession,
                "start": start,
                "modality": modality,
                "scheduled_station_ae_title": station,
                "scheduled_performing_physician_name": "Tech^Tom",
                "description": "Step " + accession,
            }
            body = {
                "accession_number": accession,
                "patient_name": name,
                "patient_id": pid,
                "patient_birth_date": "1970-01-01",
                "patient_sex": "M",
                "source": source,
                "referring_physician_name": "Ref^Rita",
                "requested_procedure_id": "RP-" + accession,
                "requested_procedure_description": "Procedure " + accession,
                "requested_procedure_code": {
                    "code_value": "C" + accession,
                    "coding_scheme_designator": "99LOCAL",
                    "code_meaning": "Code " + accession,
                },
                "scheduled_procedure_steps": [step],
            }
            built.orders[accession] = post_order(built, body)  # type: ignore[attr-defined]
        cancelled = built.orders["MWL4"]["id"]  # type: ignore[attr-defined]
        assert httpx.post(f"{api}/orders/{cancelled}/cancel", headers=admin).status_code == 200
        # The other tenant has an order with MWL1's accession number and patient ID.
        acme = {
            "accession_number": "MWL1",
            "patient_name": "ACME^PATIENT",
            "patient_id": "PA1",
            "scheduled_procedure_steps": [{"start": "2026-12-01T09:00", "modality": "CT"}],
        }
        post_order(built, acme, user="acme_admin", tenant="acme")
        yield built


def worklist_query(**step_keys: str) -> Dataset:
    """An identifier as a modality sends it: the top-level keys it wants back and one SPS
    item with its matching keys (empty ones are return keys)."""
    ds = Dataset()
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "ReferringPhysicianName",
        "PatientWeight",
    ):
        setattr(ds, keyword, "")
    ds.RequestedProcedureCodeSequence = []
    item = Dataset()
    for keyword in (
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "Modality",
        "ScheduledPerformingPhysicianName",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepStatus",
    ):
        setattr(item, keyword, step_keys.pop(keyword, ""))
    ds.ScheduledProcedureStepSequence = [item]
    for keyword, value in step_keys.items():
        setattr(ds, keyword, value)
    return ds


def find(
    world: World, identifier: Dataset, calling: str = "PEER_ALL", called: str = SERVER_AET
) -> tuple[list[Dataset], int]:
    """The matches and the final status of one MWL C-FIND."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title=called)
    assert assoc.is_established
    matches, final = [], None
    try:
        for status, found in assoc.send_c_find(identifier, ModalityWorklistInformationFind):
            if status.Status in (0xFF00, 0xFF01):
                matches.append(found)
            else:
                final = status.Status
    finally:
        assoc.release()
    return matches, final  # type: ignore[return-value]


def accessions(matches: list[Dataset]) -> list[str]:
    return [m.AccessionNumber for m in matches]


def test_matching_on_the_scheduled_procedure_step(world: World) -> None:
    every, status = find(world, worklist_query())
    assert status == 0x0000
    # Open orders only (MWL4 was cancelled), earliest first.
    assert accessions(every) == ["MWL1", "MWL2", "MWL3"]
    assert accessions(find(world, worklist_query(Modality="CT"))[0]) == ["MWL1", "MWL3"]
    assert accessions(find(world, worklist_query(Modality="CT\\MR"))[0]) == [
        "MWL1",
        "MWL2",
        "MWL3",
    ]
    station_day = worklist_query(
        ScheduledStationAETitle="CT1", ScheduledProcedureStepStartDate="20261201"
    )
    assert accessions(find(world, station_day)[0]) == ["MWL1"]
    afternoon = worklist_query(
        ScheduledProcedureStepStartDate="20261201-20261202",
        ScheduledProcedureStepStartTime="1200-",
    )
    # From 2026-12-01 12:00 on (date and time combined into one range).
    assert accessions(find(world, afternoon)[0]) == ["MWL2", "MWL3"]
    assert accessions(
        find(world, worklist_query(ScheduledProcedureStepStartDate="-20261201"))[0]
    ) == ["MWL1", "MWL2"]
    assert accessions(find(world, worklist_query(ScheduledStationAETitle="MR*"))[0]) == ["MWL2"]
    assert accessions(find(world, worklist_query(ScheduledPerformingPhysicianName="tech*"))[0]) == [
        "MWL1",
        "MWL2",
        "MWL3",
    ]
    assert accessions(find(world, worklist_query(ScheduledProcedureStepStatus="STARTED"))[0]) == []
    # Top-level keys: names case-insensitively with wildcards, IDs exactly.
    assert accessions(find(world, worklist_query(PatientName="smith*"))[0]) == ["MWL2", "MWL3"]
    assert accessions(find(world, worklist_query(PatientName="smith^john"))[0]) == ["MWL2"]
    assert accessions(find(world, worklist_query(PatientName="M?LLER*"))[0]) == ["MWL1"]
    assert accessions(find(world, worklist_query(PatientID="PB3"))[0]) == ["MWL3"]
    assert accessions(find(world, worklist_query(AccessionNumber="MWL2"))[0]) == ["MWL2"]
    assert accessions(find(world, worklist_query(AccessionNumber="MWL4"))[0]) == []


def test_what_an_item_carries(world: World) -> None:
    (item,), _ = find(world, worklist_query(AccessionNumber="MWL1"))
    order = world.orders["MWL1"]  # type: ignore[attr-defined]
    assert item.StudyInstanceUID == order["study_instance_uid"]
    assert item.SpecificCharacterSet == "ISO_IR 192" and str(item.PatientName) == "Müller^Hans"
    assert item.PatientBirthDate == "19700101" and item.PatientSex == "M"
    assert item.RequestedProcedureID == "RP-MWL1"
    assert str(item.ReferringPhysicianName) == "Ref^Rita"
    (code,) = item.RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("CMWL1", "99LOCAL")
    # A key the archive does not hold comes back empty.
    assert "PatientWeight" in item and item.PatientWeight in (None, "")
    (step,) = item.ScheduledProcedureStepSequence
    assert step.ScheduledStationAETitle == "CT1" and step.Modality == "CT"
    assert step.ScheduledProcedureStepStartDate == "20261201"
    assert step.ScheduledProcedureStepStartTime == "090000"
    assert step.ScheduledProcedureStepID == "SPS-MWL1"
    assert step.ScheduledProcedureStepStatus == "SCHEDULED"
    assert step.ScheduledProcedureStepDescription == "Step MWL1"
    # Only the keys asked for.
    assert "ScheduledStationName" not in step and "ReasonForTheRequestedProcedure" not in item


def test_bad_keys_are_a_failure_status(world: World) -> None:
    for keys in (
        {"ScheduledProcedureStepStartDate": "2026-12-01"},
        {"ScheduledProcedureStepStartDate": "20261301"},
        {"ScheduledProcedureStepStartTime": "2500"},
        {"ScheduledProcedureStepStartDate": "20261202-20261201"},
    ):
        matches, status = find(world, worklist_query(**keys))
        assert (matches, status) == ([], 0xA900), keys
    # Two SPS items in a request.
    identifier = worklist_query()
    identifier.ScheduledProcedureStepSequence.append(Dataset())
    assert find(world, identifier) == ([], 0xA900)
    # The server keeps serving.
    assert find(world, worklist_query())[1] == 0x0000


def test_peers_see_only_their_sources_and_tenant(world: World) -> None:
    assert accessions(find(world, worklist_query(), "PEER_A")[0]) == ["MWL1", "MWL2"]
    assert accessions(find(world, worklist_query(), "PEER_B")[0]) == ["MWL3"]
    # Not even by exact accession number or patient ID.
    assert find(world, worklist_query(AccessionNumber="MWL3"), "PEER_A")[0] == []
    assert find(world, worklist_query(PatientID="PA1"), "PEER_B")[0] == []
    # The acme tenant's peer sees acme's order only, never default's with the same keys.
    (acme,), _ = find(world, worklist_query(AccessionNumber="MWL1"), "ACME_PEER", "ACME")
    assert str(acme.PatientName) == "ACME^PATIENT"
    assert acme.StudyInstanceUID != world.orders["MWL1"]["study_instance_uid"]  # type: ignore[attr-defined]
    # A peer without query rights is refused.
    assert find(world, worklist_query(), "MOVE_DEST") == ([], 0x0124)


def test_findscu_worklist(world: World, tmp_path: Path) -> None:
    out = tmp_path / "rsp"
    out.mkdir()
    result = subprocess.run(
        [
            dcmtk("findscu"),
            "-W",
            "-aet",
            "PEER_ALL",
            "-aec",
            SERVER_AET,
            "-X",
            "-od",
            str(out),
            "-k",
            "PatientName",
            "-k",
            "PatientID",
            "-k",
            "AccessionNumber",
            "-k",
            "StudyInstanceUID",
            "-k",
            "ScheduledProcedureStepSequence[0].Modality=CT",
            "-k",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
            "-k",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261201-",
            "-k",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
            "127.0.0.1",
            str(world.dimse_port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = [pydicom.dcmread(path) for path in sorted(out.iterdir())]
    by_accession = {ds.AccessionNumber: ds for ds in found}
    assert sorted(by_accession) == ["MWL1", "MWL3"]
    assert by_accession["MWL3"].ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT1"
    assert by_accession["MWL1"].StudyInstanceUID == world.orders["MWL1"]["study_instance_uid"]  # type: ignore[attr-defined]
