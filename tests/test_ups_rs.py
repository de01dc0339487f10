"""UPS-RS (PS3.18 §11, workitems) over real HTTP (a `tessera serve` process with its DIMSE
listener, SQLite and PostgreSQL): one order is the same work over the orders REST API,
UPS-RS and the Modality Worklist (pynetdicom C-FIND); Procedure Step State transitions with
Transaction UIDs move the order; bad input is a 4xx naming the problem; a source-locked
user and another tenant never see, change or infer a workitem.

dicomweb-client 0.61 has no UPS-RS methods (no search_for_workitems), so the requests are
made with httpx as PS3.18 writes them."""

from __future__ import annotations

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from tests.dimse_support import SERVER_AET, wait_port
from tests.security_world import World, instance_bytes, stow
from tests.world import DATABASES, add_user, served_world

DICOM_JSON = "application/dicom+json"
STATE = "00741000"
TRANSACTION = "00081195"


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "ups") as built:
        wait_port(built.dimse_port)
        add_user(built, "tech_b", "technologist", ["ClinicB"], upload_sources=["ClinicB"])
        yield built


def order_body(accession: str, source: str = "ClinicA", station: str = "CT1") -> dict:
    return {
        "accession_number": accession,
        "patient_name": "Doe^Jane",
        "patient_id": "MRN-" + accession,
        "patient_birth_date": "1980-02-03",
        "patient_sex": "F",
        "source": source,
        "priority": "STAT",
        "requested_procedure_id": "RP-" + accession,
        "requested_procedure_description": "CT chest",
        "requested_procedure_code": {
            "code_value": "24627-2",
            "coding_scheme_designator": "LN",
            "code_meaning": "CT Chest",
        },
        "scheduled_procedure_steps": [
            {
                "scheduled_procedure_step_id": "SPS-" + accession,
                "start": "2026-12-01T10:30:00",
                "modality": "CT",
                "scheduled_station_ae_title": station,
                "scheduled_performing_physician_name": "Tech^Tom",
                "description": "CT chest w/o contrast",
            }
        ],
    }


def rest_order(world: World, accession: str, user: str = "admin", **kwargs: str) -> dict:
    response = httpx.post(
        f"{world.api()}/orders", json=order_body(accession, **kwargs), headers=world.auth(user)
    )
    assert response.status_code == 201, response.text
    return response.json()


def workitem_json(accession: str, patient_id: str | None = None, **extra: dict) -> dict:
    """A Create Workitem dataset as a UPS-RS client writes it."""
    return {
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Roe^Richard"}]},
        "00100020": {"vr": "LO", "Value": [patient_id or "MRN-" + accession]},
        "00100030": {"vr": "DA", "Value": ["19700101"]},
        "00741200": {"vr": "CS", "Value": ["HIGH"]},
        "00404005": {"vr": "DT", "Value": ["20261202083000"]},
        "00741204": {"vr": "LO", "Value": ["MR knee"]},
        "00404025": {
            "vr": "SQ",
            "Value": [
                {
                    "00080100": {"vr": "SH", "Value": ["MR1"]},
                    "00080102": {"vr": "SH", "Value": ["99TESSERA"]},
                    "00080104": {"vr": "LO", "Value": ["MR1"]},
                }
            ],
        },
        "00404026": {
            "vr": "SQ",
            "Value": [
                {
                    "00080100": {"vr": "SH", "Value": ["MR"]},
                    "00080102": {"vr": "SH", "Value": ["DCM"]},
                    "00080104": {"vr": "LO", "Value": ["Magnetic Resonance"]},
                }
            ],
        },
        "0040A370": {
            "vr": "SQ",
            "Value": [
                {
                    "00080050": {"vr": "SH", "Value": [accession]},
                    "00401001": {"vr": "SH", "Value": ["RP-" + accession]},
                    "00321060": {"vr": "LO", "Value": ["MR knee left"]},
                }
            ],
        },
        **extra,
    }


class Ups:
    """A UPS-RS user agent for one user and tenant."""

    def __init__(self, world: World, user: str, tenant: str = "default") -> None:
        self.root = world.url(tenant)
        self.client = httpx.Client(timeout=30, headers={**world.auth(user), "Accept": DICOM_JSON})

    def search(self, **params: str) -> httpx.Response:
        return self.client.get(f"{self.root}/workitems", params=params)

    def found(self, **params: str) -> list[dict]:
        response = self.search(**params)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, uid: str) -> httpx.Response:
        return self.client.get(f"{self.root}/workitems/{uid}")

    def create(self, dataset: object, query: str = "") -> httpx.Response:
        return self.client.post(
            f"{self.root}/workitems{query}",
            json=dataset,
            headers={"Content-Type": DICOM_JSON},
        )

    def update(self, uid: str, dataset: object, transaction: str | None = None) -> httpx.Response:
        params = {"transaction": transaction} if transaction else None
        return self.client.post(
            f"{self.root}/workitems/{uid}",
            params=params,
            json=dataset,
            headers={"Content-Type": DICOM_JSON},
        )

    def state(self, uid: str, state: str, transaction: str | None) -> httpx.Response:
        dataset = {STATE: {"vr": "CS", "Value": [state]}}
        if transaction:
            dataset[TRANSACTION] = {"vr": "UI", "Value": [transaction]}
        return self.client.put(
            f"{self.root}/workitems/{uid}/state",
            json=dataset,
            headers={"Content-Type": DICOM_JSON},
        )

    def cancel(self, uid: str, reason: str = "") -> httpx.Response:
        dataset = {"00741238": {"vr": "LT", "Value": [reason]}} if reason else {}
        return self.client.post(
            f"{self.root}/workitems/{uid}/cancelrequest",
            json=dataset,
            headers={"Content-Type": DICOM_JSON},
        )


def value(item: dict, tag: str) -> object:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def uid_of(item: dict) -> str:
    return str(value(item, "00080018"))


def accession_of(item: dict) -> str:
    return str(value(value(item, "0040A370"), "00080050"))  # type: ignore[arg-type]


def mwl(world: World, calling: str = "PEER_ALL", **top: str) -> list[Dataset]:
    """A Modality Worklist C-FIND (pynetdicom), matching keys at the top level."""
    identifier = Dataset()
    identifier.PatientName = ""
    identifier.AccessionNumber = top.pop("AccessionNumber", "")
    identifier.StudyInstanceUID = ""
    item = Dataset()
    item.ScheduledStationAETitle = ""
    item.Modality = ""
    item.ScheduledProcedureStepStartDate = ""
    identifier.ScheduledProcedureStepSequence = [item]
    ae = AE(ae_title=calling)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title=SERVER_AET)
    assert assoc.is_established
    matches = []
    try:
        for status, found in assoc.send_c_find(identifier, ModalityWorklistInformationFind):
            if status.Status in (0xFF00, 0xFF01):
                matches.append(found)
            else:
                assert status.Status == 0x0000
    finally:
        assoc.release()
    return matches


def test_one_order_is_the_same_work_over_rest_ups_and_mwl(world: World) -> None:
    order = rest_order(world, "UPS1")
    ups = Ups(world, "admin")
    found = ups.found(
        **{
            "ScheduledStationNameCodeSequence.CodeValue": "CT1",
            "ScheduledProcedureStepStartDateTime": "20261201100000-20261201110000",
            "PatientName": "doe*",
            "0040A370.00080050": "UPS1",
        }
    )
    assert [accession_of(item) for item in found] == ["UPS1"]
    item = found[0]
    assert value(item, "00080016") == "1.2.840.10008.5.1.4.34.6.1"
    assert value(item, STATE) == "SCHEDULED"
    assert value(item, "0020000D") == order["study_instance_uid"]
    assert value(item, "00100010") == {"Alphabetic": "Doe^Jane"}
    assert value(item, "00100020") == "MRN-UPS1"
    assert value(item, "00404005") == "20261201103000"
    assert value(item, "00741200") == "HIGH"  # STAT
    assert value(value(item, "00404026"), "00080100") == "CT"  # type: ignore[arg-type]
    assert value(value(item, "00404025"), "00080100") == "CT1"  # type: ignore[arg-type]
    assert value(value(item, "00404018"), "00080100") == "24627-2"  # type: ignore[arg-type]
    assert TRANSACTION not in item
    # Outside the time range, another station, another modality: not found.
    later = ups.found(ScheduledProcedureStepStartDateTime="20261201110001-")
    assert "UPS1" not in [accession_of(i) for i in later]
    assert ups.found(**{"ScheduledStationNameCodeSequence.CodeValue": "MR9"}) == []
    assert "UPS1" not in [accession_of(i) for i in ups.found(Modality="MR")]
    # Retrieve answers the same workitem.
    retrieved = ups.get(uid_of(item))
    assert retrieved.status_code == 200, retrieved.text
    assert retrieved.headers["content-type"].startswith(DICOM_JSON)
    assert retrieved.json() == [item]
    # The modality sees the same order, with the same Study Instance UID.
    matches = [m for m in mwl(world) if m.AccessionNumber == "UPS1"]
    assert len(matches) == 1
    assert matches[0].StudyInstanceUID == order["study_instance_uid"]
    assert matches[0].ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT1"
    # Editing the order over REST keeps its workitem UID.
    patched = httpx.patch(
        f"{world.api()}/orders/{order['id']}",
        json={
            "scheduled_procedure_steps": order_body("UPS1", station="CT2")[
                "scheduled_procedure_steps"
            ]
        },
        headers=world.auth("admin"),
    )
    assert patched.status_code == 200, patched.text
    after = ups.get(uid_of(item)).json()[0]
    assert value(value(after, "00404025"), "00080100") == "CT2"  # type: ignore[arg-type]


def test_create_workitem_makes_an_order_on_the_worklist(world: World) -> None:
    ups = Ups(world, "admin")
    uid = generate_uid(prefix=None)
    created = ups.create(workitem_json("UPS2"), f"?workitem={uid}&source=ClinicA")
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith(f"/dicomweb/workitems/{uid}")
    orders = httpx.get(
        f"{world.api()}/orders", params={"accession_number": "UPS2"}, headers=world.auth("admin")
    ).json()
    assert len(orders) == 1
    order = orders[0]
    assert order["status"] == "SCHEDULED" and order["source"] == "ClinicA"
    assert order["patient_name"] == "Roe^Richard" and order["priority"] == "HIGH"
    step = order["scheduled_procedure_steps"][0]
    assert step["start"] == "2026-12-02T08:30:00"
    assert (step["modality"], step["scheduled_station_ae_title"]) == ("MR", "MR1")
    assert step["description"] == "MR knee"
    item = ups.get(uid).json()[0]
    assert uid_of(item) == uid and value(item, "0020000D") == order["study_instance_uid"]
    mwl_items = [m for m in mwl(world) if m.AccessionNumber == "UPS2"]
    assert [m.StudyInstanceUID for m in mwl_items] == [order["study_instance_uid"]]
    assert mwl_items[0].ScheduledProcedureStepSequence[0].Modality == "MR"
    # The same UID again, or the same accession number: 409, nothing written.
    again = ups.create(workitem_json("UPS2"), f"?{uid}")
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert again.headers["warning"].startswith("299 ")
    same_accession = ups.create(workitem_json("UPS2"), "?source=ClinicA")
    assert same_accession.status_code == 409, same_accession.text
    # The UID from the dataset when the URL names none.
    uid3 = generate_uid(prefix=None)
    third = ups.create(workitem_json("UPS3", **{"00080018": {"vr": "UI", "Value": [uid3]}}))
    assert third.status_code == 201, third.text
    assert third.headers["location"].endswith(uid3)


def stored_images_for(world: World, order: dict) -> None:
    data = instance_bytes(
        order["study_instance_uid"],
        generate_uid(),
        generate_uid(),
        "Doe^Jane",
        1,
        {"PatientID": order["patient_id"], "AccessionNumber": order["accession_number"]},
    )
    response = stow(world.url(), [data], world.auth("admin"), "ClinicA")
    assert response.status_code == 200, response.text


def order_status(world: World, order_id: int) -> str:
    return httpx.get(f"{world.api()}/orders/{order_id}", headers=world.auth("admin")).json()[
        "status"
    ]


def test_state_transitions_move_the_order(world: World) -> None:
    order = rest_order(world, "UPS4")
    ups = Ups(world, "admin")
    uid = uid_of(ups.found(**{"0040A370.00080050": "UPS4"})[0])
    transaction = generate_uid(prefix=None)
    # COMPLETED before IN PROGRESS is a state conflict; a missing Transaction UID is 400.
    early = ups.state(uid, "COMPLETED", transaction)
    assert early.status_code == 409 and "not yet IN PROGRESS" in early.json()["detail"]
    missing = ups.state(uid, "IN PROGRESS", None)
    assert missing.status_code == 400 and "Transaction UID" in missing.json()["detail"]
    claimed = ups.state(uid, "IN PROGRESS", transaction)
    assert claimed.status_code == 200, claimed.text
    assert order_status(world, order["id"]) == "IN_PROGRESS"
    item = ups.get(uid).json()[0]
    assert value(item, STATE) == "IN PROGRESS" and TRANSACTION not in item
    assert "UPS4" in [m.AccessionNumber for m in mwl(world)]  # still on the worklist
    twice = ups.state(uid, "IN PROGRESS", generate_uid(prefix=None))
    assert twice.status_code == 409 and "already IN PROGRESS" in twice.json()["detail"]
    wrong = ups.state(uid, "COMPLETED", generate_uid(prefix=None))
    assert wrong.status_code == 400 and "Transaction UID" in wrong.json()["detail"]
    # COMPLETED needs the images (the final state requirement of an acquisition).
    no_images = ups.state(uid, "COMPLETED", transaction)
    assert no_images.status_code == 409 and "C304" in no_images.json()["detail"]
    stored_images_for(world, order)
    done = ups.state(uid, "COMPLETED", transaction)
    assert done.status_code == 200, done.text
    assert order_status(world, order["id"]) == "IMAGES_READY"
    repeat = ups.state(uid, "COMPLETED", transaction)
    assert repeat.status_code == 200 and "already" in repeat.headers["warning"]
    assert ups.state(uid, "CANCELED", transaction).status_code == 409
    assert "UPS4" not in [m.AccessionNumber for m in mwl(world)]
    completed = ups.found(ProcedureStepState="COMPLETED")
    assert uid in [uid_of(i) for i in completed]
    assert uid not in [uid_of(i) for i in ups.found(ProcedureStepState="SCHEDULED,IN PROGRESS")]
    history = httpx.get(
        f"{world.api()}/orders/{order['id']}/history", headers=world.auth("admin")
    ).json()
    assert [h["to_status"] for h in history] == ["SCHEDULED", "IN_PROGRESS", "IMAGES_READY"]
    assert "UPS-RS" in history[1]["reason"]


def test_cancellation(world: World) -> None:
    ups = Ups(world, "admin")
    scheduled = rest_order(world, "UPS5")
    uid = uid_of(ups.found(**{"0040A370.00080050": "UPS5"})[0])
    accepted = ups.cancel(uid, "patient refused")
    assert accepted.status_code == 202, accepted.text
    assert order_status(world, scheduled["id"]) == "CANCELLED"
    again = ups.cancel(uid)
    assert again.status_code == 202 and "CANCELED" in again.headers["warning"]
    assert value(ups.get(uid).json()[0], STATE) == "CANCELED"

    in_progress = rest_order(world, "UPS6")
    uid6 = uid_of(ups.found(**{"0040A370.00080050": "UPS6"})[0])
    transaction = generate_uid(prefix=None)
    assert ups.state(uid6, "IN PROGRESS", transaction).status_code == 200
    refused = ups.cancel(uid6)
    assert refused.status_code == 409 and "IN PROGRESS" in refused.json()["detail"]
    canceled = ups.state(uid6, "CANCELED", transaction)
    assert canceled.status_code == 200, canceled.text
    assert order_status(world, in_progress["id"]) == "CANCELLED"


def test_update_workitem(world: World) -> None:
    ups = Ups(world, "admin")
    order = rest_order(world, "UPS7")
    uid = uid_of(ups.found(**{"0040A370.00080050": "UPS7"})[0])
    name = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Janet"}]}}
    start = {"00404005": {"vr": "DT", "Value": ["20261203090000"]}}
    assert ups.update(uid, {**name, **start}).status_code == 200
    got = httpx.get(f"{world.api()}/orders/{order['id']}", headers=world.auth("admin")).json()
    assert got["patient_name"] == "Doe^Janet"
    assert got["scheduled_procedure_steps"][0]["start"] == "2026-12-03T09:00:00"
    assert got["scheduled_procedure_steps"][0]["modality"] == "CT"  # the rest kept
    assert uid_of(ups.get(uid).json()[0]) == uid
    transaction = generate_uid(prefix=None)
    early = ups.update(uid, name, transaction)
    assert early.status_code == 400 and "SCHEDULED" in early.json()["detail"]
    assert ups.state(uid, "IN PROGRESS", transaction).status_code == 200
    assert ups.update(uid, name).status_code == 400  # no Transaction UID
    assert ups.update(uid, name, generate_uid(prefix=None)).status_code == 400
    locked = ups.update(uid, name, transaction)
    assert locked.status_code == 409 and "SCHEDULED" in locked.json()["detail"]
    progress = {"00741002": {"vr": "SQ", "Value": [{"00741004": {"vr": "DS", "Value": [50]}}]}}
    kept = ups.update(uid, progress, transaction)  # the performer's progress is kept
    assert kept.status_code == 200 and "warning" not in kept.headers
    shown = ups.get(uid).json()[0]["00741002"]["Value"][0]
    assert shown["00741004"]["Value"] == [50]
    assert ups.state(uid, "CANCELED", transaction).status_code == 200
    final = ups.update(uid, name, transaction)
    assert final.status_code == 400 and "CANCELED" in final.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "content", "content_type", "status", "named"),
    [
        ("POST", "/workitems", b"{not json", DICOM_JSON, 400, "not JSON"),
        ("POST", "/workitems", b"{}", "application/xml", 415, "dicom+json"),
        ("POST", "/workitems", b"[1, 2]", DICOM_JSON, 400, "one DICOM JSON dataset"),
        (
            "POST",
            "/workitems",
            b'{"00100010": {"vr": "PN", "Value": 5}}',
            DICOM_JSON,
            400,
            "DICOM JSON",
        ),
        (
            "POST",
            "/workitems",
            b'{"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}}',
            DICOM_JSON,
            400,
            "SCHEDULED",
        ),
        (
            "POST",
            "/workitems",
            b'{"00741000": {"vr": "CS", "Value": ["SCHEDULED"]}, "00100020": {"vr": "LO", "Value": ["P"]}}',
            DICOM_JSON,
            400,
            "Accession Number",
        ),
        (
            "PUT",
            "/workitems/1.2.3/state",
            b'{"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}, "00081195": {"vr": "UI", "Value": ["1.2"]}}',
            DICOM_JSON,
            404,
            "no workitem",
        ),
        ("POST", "/workitems/1.2.3", b"{}", DICOM_JSON, 404, "no workitem"),
        ("POST", "/workitems/1.2.3/cancelrequest", b"", DICOM_JSON, 404, "no workitem"),
        ("GET", "/workitems/1.2.3", None, None, 404, "no workitem"),
        ("GET", "/workitems/not-a-uid", None, None, 404, "no workitem"),
        (
            "GET",
            "/workitems?ScheduledProcedureStepExpirationDateTime=2026",
            None,
            None,
            400,
            "not a matching key",
        ),
        ("GET", "/workitems?NoSuchKeyword=1", None, None, 400, "unknown parameter"),
        (
            "GET",
            "/workitems?ScheduledProcedureStepStartDateTime=2026-13",
            None,
            None,
            400,
            "ScheduledProcedureStepStartDate",
        ),
        (
            "GET",
            "/workitems?ScheduledProcedureStepStartDateTime=20261201120000%2B0100",
            None,
            None,
            400,
            "offset",
        ),
        ("GET", "/workitems?ProcedureStepState=DONE", None, None, 400, "IN PROGRESS"),
        ("GET", "/workitems?limit=-1", None, None, 400, "limit"),
        ("GET", "/workitems?fuzzymatching=true", None, None, 400, "fuzzy"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(
    world: World,
    method: str,
    path: str,
    content: bytes | None,
    content_type: str | None,
    status: int,
    named: str,
) -> None:
    headers = {**world.auth("admin"), "Accept": DICOM_JSON}
    if content_type:
        headers["Content-Type"] = content_type
    response = httpx.request(method, world.url() + path, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]


def test_bad_workitem_values(world: World) -> None:
    ups = Ups(world, "admin")
    born = workitem_json("UPS8", **{"00100030": {"vr": "DA", "Value": ["31121999"]}})
    refused = ups.create(born, "?source=ClinicA")
    assert refused.status_code == 400 and "Birth Date" in refused.json()["detail"]
    # A value the reason quotes, not Latin-1 and with a line break: still a 400 with a Warning.
    odd = workitem_json("UPS8", **{"00100030": {"vr": "DA", "Value": ["３１\n1999"]}})
    odd_answer = ups.create(odd)
    assert odd_answer.status_code == 400, odd_answer.text
    assert "３１" in odd_answer.json()["detail"] and odd_answer.headers["warning"].isascii()
    start = workitem_json("UPS8", **{"00404005": {"vr": "DT", "Value": ["tomorrow"]}})
    assert "Start DateTime" in ups.create(start).json()["detail"]
    bad_uid = ups.create(workitem_json("UPS8"), "?workitem=1.2.abc")
    assert bad_uid.status_code == 400 and "workitem UID" in bad_uid.json()["detail"]
    with_transaction = workitem_json("UPS8", **{TRANSACTION: {"vr": "UI", "Value": ["1.2.3"]}})
    assert ups.create(with_transaction).status_code == 400
    rest_order(world, "UPS9")
    uid = uid_of(ups.found(**{"0040A370.00080050": "UPS9"})[0])
    assert ups.state(uid, "SCHEDULED", "1.2.3").status_code == 400
    assert ups.state(uid, "FINISHED", "1.2.3").status_code == 400
    assert ups.state(uid, "IN PROGRESS", "not-a-uid").status_code == 400
    assert (
        ups.client.get(f"{ups.root}/workitems", headers={"Accept": "image/jpeg"}).status_code == 406
    )
    # Nothing of the refused creates was written.
    orders = httpx.get(
        f"{world.api()}/orders", params={"accession_number": "UPS8"}, headers=world.auth("admin")
    ).json()
    assert orders == []


def test_sources_tenants_and_permissions(world: World) -> None:
    rest_order(world, "SECA", source="ClinicA")
    rest_order(world, "SECB", source="ClinicB")
    admin = Ups(world, "admin")
    uid_a = uid_of(admin.found(**{"0040A370.00080050": "SECA"})[0])
    uid_b = uid_of(admin.found(**{"0040A370.00080050": "SECB"})[0])

    ref_a = Ups(world, "ref_a")  # reads ClinicA only
    seen = [accession_of(i) for i in ref_a.found()]
    assert "SECA" in seen and "SECB" not in seen
    assert ref_a.found(**{"0040A370.00080050": "SECB"}) == []
    assert ref_a.found(SOPInstanceUID=uid_b) == []
    assert ref_a.get(uid_a).status_code == 200
    hidden = ref_a.get(uid_b)
    unknown = ref_a.get("1.2.3.999")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["detail"] == f"no workitem {uid_b}"
    # No orders permission: no changes (the gate says 403).
    assert ref_a.create(workitem_json("SECX")).status_code == 403
    assert ref_a.state(uid_a, "IN PROGRESS", "1.2.3").status_code == 403
    assert ref_a.cancel(uid_a).status_code == 403

    read_b = Ups(world, "read_b")
    assert [accession_of(i) for i in read_b.found(**{"0040A370.00080050": "SECB"})] == ["SECB"]
    assert read_b.found(**{"0040A370.00080050": "SECA"}) == []

    # A technologist of ClinicB changes ClinicB's workitems only.
    tech_b = Ups(world, "tech_b")
    for response in (
        tech_b.state(uid_a, "IN PROGRESS", generate_uid(prefix=None)),
        tech_b.cancel(uid_a),
        tech_b.update(uid_a, {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "X^Y"}]}}),
    ):
        assert response.status_code == 404 and "no workitem" in response.json()["detail"]
    assert value(admin.get(uid_a).json()[0], STATE) == "SCHEDULED"
    # Creating for a source it cannot see is 'unknown source', like a missing one.
    other_source = tech_b.create(workitem_json("SECY"), "?source=ClinicA")
    assert other_source.status_code == 400 and "unknown source" in other_source.json()["detail"]
    own = tech_b.create(workitem_json("SECZ"))
    assert own.status_code == 201, own.text
    assert admin.found(**{"0040A370.00080050": "SECZ"})  # in ClinicB, tech_b's only source

    # Another tenant: nothing of default's, even by UID; and its own worklist.
    acme = Ups(world, "acme_admin", tenant="acme")
    assert acme.found() == []
    assert acme.get(uid_a).status_code == 404
    assert acme.state(uid_a, "IN PROGRESS", generate_uid(prefix=None)).status_code == 404
    assert acme.found(SOPInstanceUID=uid_a) == []
    # The same workitem UID may exist in both tenants, each its own.
    same_uid = acme.create(workitem_json("SECA"), f"?workitem={uid_a}")
    assert same_uid.status_code == 201, same_uid.text
    assert value(acme.get(uid_a).json()[0], "00100010") == {"Alphabetic": "Roe^Richard"}
    assert value(admin.get(uid_a).json()[0], "00100010") == {"Alphabetic": "Doe^Jane"}

    # No read permission at all.
    assert Ups(world, "nobody").search().status_code == 403
    # The worklist of a peer limited to ClinicA has SECA and not SECB, as UPS-RS for ref_a.
    peer_a = [m.AccessionNumber for m in mwl(world, calling="PEER_A")]
    assert "SECA" in peer_a and "SECB" not in peer_a


def test_paging(world: World) -> None:
    ups = Ups(world, "admin")
    for accession in ("PAGE1", "PAGE2", "PAGE3"):
        rest_order(world, accession, station="PAGER")
    key = {"ScheduledStationNameCodeSequence.CodeValue": "PAGER"}
    first = ups.search(**key, limit="2")
    assert first.status_code == 200 and len(first.json()) == 2
    assert "additional results" in first.headers["warning"]
    rest = ups.search(**key, limit="2", offset="2")
    assert len(rest.json()) == 1 and "warning" not in rest.headers
    everything = [uid_of(i) for i in first.json() + rest.json()]
    assert len(set(everything)) == 3
