"""Images attached to an order show the ORDER's patient and accession values (IHE Scheduled
Workflow coercion), over real HTTP and DIMSE against a `tessera serve` process (SQLite and
PostgreSQL): QIDO-RS study and instance level, WADO-RS metadata and a retrieved instance
(WADO-URI), for the three attach paths (STOW-RS ?order=, `tessera upload --order`, dcmtk's
storescu by Study Instance UID), while the stored file keeps the bytes received. The QIDO-RS
order status extension (`orderstatus=`, `includefield=OrderStatus`). A source-locked user of
another source and another tenant neither see nor infer the order's values or status."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tessera.dicomweb import multipart_writer
from tests.dimse_support import dcmtk
from tests.security_world import World, instance_bytes, stow
from tests.world import DATABASES, patient_order, served_world

RECEIVED = {"PatientName": "MODALITY^TYPED", "PatientID": "", "AccessionNumber": "MOD-ACC"}


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    # A generous start: the machine may be loaded.
    with served_world(request.param, tmp_path_factory, "coercion", start_timeout=600) as built:
        yield built


def _get(world: World, user: str, path: str, tenant: str = "default", **params: str):  # type: ignore[no-untyped-def]
    response = httpx.get(
        f"{world.url(tenant)}{path}", params=params, headers=world.auth(user), timeout=30
    )
    assert response.status_code in (200, 204), response.text
    return [] if response.status_code == 204 else response.json()


def _value(item: dict, tag: str) -> object:
    values = item.get(tag, {}).get("Value", [None])
    first = values[0] if values else None
    return first["Alphabetic"] if isinstance(first, dict) else first


def _shows(item: dict) -> tuple:
    return (_value(item, "00100010"), _value(item, "00100020"), _value(item, "00080050"))


def _ordered(order: dict) -> tuple:
    return (order["patient_name"], order["patient_id"], order["accession_number"])


def _retrieved(world: World, user: str, uids: tuple[str, str, str]) -> bytes:
    params = {
        "requestType": "WADO",
        "studyUID": uids[0],
        "seriesUID": uids[1],
        "objectUID": uids[2],
        "contentType": "application/dicom",
    }
    response = httpx.get(f"{world.url()}/wado", params=params, headers=world.auth(user), timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def _kept_key(world: World, sop: str) -> str:
    for key in world.server.blob_keys():
        header = pydicom.dcmread(io.BytesIO(world.server.read_blob(key)), stop_before_pixels=True)
        if header.get("SOPInstanceUID") == sop:
            return key
    raise AssertionError(f"no stored file for {sop}")


def _kept_file(world: World, sop: str) -> bytes:
    return world.server.read_blob(_kept_key(world, sop))


def _assert_shows_order(
    world: World,
    order: dict,
    uids: tuple[str, str, str],
    sent: bytes,
    over_dimse: bool = False,
) -> None:
    study, series, sop = uids
    ordered = _ordered(order)
    for user in ("admin", "tech"):  # every source, and locked to the order's source
        found = _get(world, user, "/studies", StudyInstanceUID=study)
        assert [_shows(s) for s in found] == [ordered]
        by_accession = _get(world, user, "/studies", AccessionNumber=order["accession_number"])
        assert [_value(s, "0020000D") for s in by_accession] == [study]
        assert (
            _get(world, user, "/studies", AccessionNumber="MOD-ACC", StudyInstanceUID=study) == []
        )
        instances = _get(world, user, "/instances", SOPInstanceUID=sop)
        assert [_shows(i) for i in instances] == [ordered]
        metadata = _get(world, user, f"/studies/{study}/metadata")
        assert {_shows(m) for m in metadata} == {ordered}
        assert metadata[0]["00080051"]["Value"][0]["00400031"]["Value"] == ["RIS-A"]
        retrieved = pydicom.dcmread(io.BytesIO(_retrieved(world, user, uids)))
        assert (
            str(retrieved.PatientName),
            retrieved.PatientID,
            retrieved.AccessionNumber,
            retrieved.PatientBirthDate,
            retrieved.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID,
        ) == (*ordered, "19700506", "RIS-A")
    # The file kept is the one received (audit): the modality's values, its content address
    # (SHA-256) unchanged; over STOW-RS the very bytes sent.
    kept = _kept_file(world, sop)
    assert hashlib.sha256(kept).hexdigest() in _kept_key(world, sop)
    stored = pydicom.dcmread(io.BytesIO(kept))
    assert (str(stored.PatientName), stored.PatientID, stored.AccessionNumber) == (
        "MODALITY^TYPED",
        "",
        "MOD-ACC",
    )
    if not over_dimse:
        assert kept == sent
    # Another source's user and another tenant: nothing of it, not even by the order's values.
    for user, tenant in (("read_b", "default"), ("acme_admin", "acme")):
        for params in (
            {"StudyInstanceUID": study},
            {"AccessionNumber": order["accession_number"]},
            {"PatientID": order["patient_id"]},
            {"orderstatus": "IN_PROGRESS,IMAGES_READY", "StudyInstanceUID": study},
        ):
            assert _get(world, user, "/studies", tenant, **params) == []


def _instance(study: str) -> tuple[tuple[str, str, str], bytes]:
    uids = (study, generate_uid(), generate_uid())
    return uids, instance_bytes(*uids, "MODALITY^TYPED", 1, dict(RECEIVED))


def test_stow_with_order_parameter(world: World) -> None:
    order = patient_order(world, "CO-STOW")
    uids, data = _instance(generate_uid())  # the modality's own Study Instance UID
    response = httpx.post(
        f"{world.url()}/studies",
        params={"source": "ClinicA", "order": str(order["id"])},
        content=multipart_writer.body("b0undary", [data]),
        headers={
            **world.auth("tech"),
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=b0undary',
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    _assert_shows_order(world, order, uids, data)


def test_upload_cli_with_order(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    order = patient_order(world, "CO-CLI")
    uids, data = _instance(generate_uid())
    (tmp_path / "one.dcm").write_bytes(data)
    command = [sys.executable, "-m", "tessera.cli", "upload", "--url", world.url()]
    command += ["--token", world.keys["tech"], "--source", "ClinicA", "--order", str(order["id"])]
    result = subprocess.run(
        [*command, "--no-progress", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_shows_order(world, order, uids, data)


def test_storescu_attaches_by_study_uid(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    order = patient_order(world, "CO-DIMSE")
    uids, data = _instance(order["study_instance_uid"])  # as the worklist gave it
    path = tmp_path / "one.dcm"
    path.write_bytes(data)
    result = subprocess.run(
        [dcmtk("storescu"), "-aet", "PEER_A", "-aec", "TESSERA", "127.0.0.1"]
        + [str(world.dimse_port), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    attached = httpx.get(
        f"{world.api()}/orders/{order['id']}", headers=world.auth("admin"), timeout=30
    ).json()
    assert attached["status"] == "IN_PROGRESS", attached
    _assert_shows_order(world, order, uids, data, over_dimse=True)


def test_order_status_in_study_search(world: World) -> None:
    order = patient_order(world, "CO-STATUS")
    uids, data = _instance(order["study_instance_uid"])
    assert stow(world.url(), [data], world.auth("tech"), "ClinicA").status_code == 200
    study = uids[0]

    def statuses(user: str, tenant: str = "default", **params: str) -> dict:
        return {
            _value(s, "0020000D"): s.get("00711001", {}).get("Value", [])
            for s in _get(world, user, "/studies", tenant, **params)
        }

    for user in ("admin", "tech", "ref_a"):
        assert statuses(user, orderstatus="IN_PROGRESS").get(study) == ["IN_PROGRESS"]
        assert study not in statuses(user, orderstatus="IMAGES_READY,REPORTED")
        one = _get(world, user, "/studies", StudyInstanceUID=study, includefield="OrderStatus")
        assert one[0]["00710010"] == {"vr": "LO", "Value": ["TESSERA 1.0"]}
        assert one[0]["00711001"] == {"vr": "CS", "Value": ["IN_PROGRESS"]}
        plain = _get(world, user, "/studies", StudyInstanceUID=study)
        assert "00711001" not in plain[0] and "00710010" not in plain[0]
    # Reported: the worklist filter follows the status.
    moved = httpx.post(
        f"{world.api()}/orders/{order['id']}/status",
        json={"status": "IMAGES_READY", "reason": "test"},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert moved.status_code == 200, moved.text
    assert statuses("admin", orderstatus="images_ready,REPORTED").get(study) == ["IMAGES_READY"]
    # A study without an order: present and empty when asked.
    plain_study = world.objects[0].study
    none = _get(
        world, "admin", "/studies", StudyInstanceUID=plain_study, includefield="OrderStatus"
    )
    assert none[0]["00711001"] == {"vr": "CS"}
    # Other source, other tenant: the status filter reveals nothing.
    for user, tenant in (("read_b", "default"), ("acme_admin", "acme")):
        for status in ("IMAGES_READY", "IN_PROGRESS,IMAGES_READY,REPORTED,FINAL,SCHEDULED"):
            assert study not in statuses(user, tenant, orderstatus=status)
    # Bad input: named 400s.
    for params, named in (
        ({"orderstatus": "DONE"}, "unknown order status 'DONE'"),
        ({"orderstatus": ","}, "no value"),
        ([("orderstatus", "FINAL"), ("orderstatus", "REPORTED")], "given more than once"),
    ):
        bad = httpx.get(
            f"{world.url()}/studies", params=params, headers=world.auth("admin"), timeout=30
        )
        assert bad.status_code == 400 and named in bad.text, bad.text
    bad = httpx.get(
        f"{world.url()}/series",
        params={"orderstatus": "FINAL"},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert bad.status_code == 400 and "study search extension" in bad.text, bad.text


def test_shared_study_shows_the_order_to_its_source_only(world: World) -> None:
    """s3 holds instances of ClinicA (a3) and ClinicB (b3): an order of ClinicA attached to
    it changes what ClinicA's callers see and send, never ClinicB's."""
    a3 = next(o for o in world.objects if o.name == "a3")
    b3 = next(o for o in world.objects if o.name == "b3")
    order = patient_order(world, "CO-SHARED", patient_id="PID-ALFA")
    attach = httpx.post(
        f"{world.api()}/orders/{order['id']}/study",
        json={"study_instance_uid": a3.study},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert attach.status_code == 200, attach.text
    ordered = ("ORDERED^PATIENT^CO-SHARED", "PID-ALFA", "CO-SHARED")
    assert [_shows(s) for s in _get(world, "ref_a", "/studies", StudyInstanceUID=a3.study)] == [
        ordered
    ]
    seen_b = _get(world, "read_b", "/studies", StudyInstanceUID=b3.study)
    assert [_value(s, "00080050") for s in seen_b] == ["ACC-BRAVO"]
    metadata_b = _get(world, "read_b", f"/studies/{b3.study}/metadata")
    assert {_value(m, "00080050") for m in metadata_b} == {"ACC-BRAVO"}
    assert "CO-SHARED" not in str(metadata_b) and "ORDERED" not in str(metadata_b)
    assert _get(world, "read_b", "/studies", AccessionNumber="CO-SHARED") == []
    assert (
        _get(world, "read_b", "/studies", orderstatus="IN_PROGRESS", StudyInstanceUID=b3.study)
        == []
    )
    # The admin (every source): ClinicA's instance coerced, ClinicB's sent as stored.
    b3_bytes = _retrieved(world, "admin", (b3.study, b3.series, b3.instance))
    assert b3_bytes == world.stored["b3"]
    a3_sent = pydicom.dcmread(
        io.BytesIO(_retrieved(world, "admin", (a3.study, a3.series, a3.instance)))
    )
    assert a3_sent.AccessionNumber == "CO-SHARED"


def test_identity_change_after_attach_wins_per_keyword(world: World) -> None:
    order = patient_order(world, "CO-LATER")
    uids = (order["study_instance_uid"], generate_uid(), generate_uid())
    received = {**RECEIVED, "PatientID": order["patient_id"]}
    data = instance_bytes(*uids, "MODALITY^TYPED", 1, received)
    assert stow(world.url(), [data], world.auth("tech"), "ClinicA").status_code == 200
    study = _get(world, "admin", "/studies", StudyInstanceUID=uids[0])[0]
    assert _shows(study) == _ordered(order)
    # Then the study's identity gets a corrected name (an ADT A08, say).
    api = world.api()
    patients = httpx.get(
        f"{api}/patients",
        params={"patient_id": order["patient_id"]},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert patients.status_code == 200, patients.text
    identity = patients.json()[0]["id"]
    corrected = httpx.patch(
        f"{api}/patients/{identity}",
        json={"patient_name": "CORRECTED^LATER", "reason": "test"},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert corrected.status_code == 200, corrected.text
    found = _get(world, "admin", "/studies", StudyInstanceUID=uids[0])
    # The later change wins for the patient keywords; the order's accession number stays.
    assert _value(found[0], "00100010") == "CORRECTED^LATER"
    assert _value(found[0], "00080050") == "CO-LATER"
    sent = pydicom.dcmread(io.BytesIO(_retrieved(world, "admin", uids)))
    assert (str(sent.PatientName), sent.AccessionNumber) == ("CORRECTED^LATER", "CO-LATER")
