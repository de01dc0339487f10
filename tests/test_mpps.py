"""MPPS N-CREATE / N-SET against a real `tessera serve` with a pynetdicom SCU, and "study
complete": IMAGES_READY once an MPPS is COMPLETED and every instance it references is
stored (at once, or by the worker when the last instance arrives later), DISCONTINUED, the
failure statuses, and a peer of another source or tenant never touching the order."""

from __future__ import annotations

import time

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, ModalityPerformedProcedureStep

from tests.dimse_support import SERVER_AET, wait_port
from tests.security_world import World, instance_bytes, stow
from tests.world import DATABASES, post_order, served_world


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    # No quiet-period completion during these tests: only MPPS decides.
    env = {
        "TESSERA_STUDY_COMPLETE_QUIET_SECONDS": "86400",
        "TESSERA_STUDY_COMPLETE_INTERVAL_SECONDS": "1",
    }
    with served_world(request.param, tmp_path_factory, "mpps", env) as built:
        wait_port(built.dimse_port)
        yield built


def new_order(world: World, accession: str) -> dict:
    body = {
        "accession_number": accession,
        "patient_name": "DOE^JANE",
        "patient_id": "PAT-1",
        "source": "ClinicA",
        "scheduled_procedure_steps": [{"start": "2026-12-01T09:00", "modality": "CT"}],
    }
    return post_order(world, body)


def order_now(world: World, order: dict) -> dict:
    return httpx.get(
        f"{world.api()}/orders/{order['id']}", headers=world.auth("admin"), timeout=30
    ).json()


def in_progress(order: dict) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT1"
    ds.Modality = "CT"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PAT-1"
    item = Dataset()
    item.StudyInstanceUID = order["study_instance_uid"]
    item.AccessionNumber = order["accession_number"]
    item.ScheduledProcedureStepID = "1"
    ds.ScheduledStepAttributesSequence = [item]
    ds.PerformedSeriesSequence = []
    return ds


def finished(status: str, series_uid: str, sop_uids: list[str]) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ReferencedImageSequence = []
    for uid in sop_uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = uid
        series.ReferencedImageSequence.append(ref)
    ds.PerformedSeriesSequence = [series]
    return ds


class Mpps:
    """One association to the server's MPPS SCP."""

    def __init__(self, world: World, calling: str = "PEER_A", called: str = SERVER_AET) -> None:
        ae = AE(ae_title=calling)
        ae.add_requested_context(ModalityPerformedProcedureStep)
        self.assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title=called)
        assert self.assoc.is_established

    def create(self, ds: Dataset, uid: str) -> tuple[int, str]:
        status, _ = self.assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        return status.Status, str(status.get("ErrorComment", ""))

    def set(self, ds: Dataset, uid: str) -> tuple[int, str]:
        status, _ = self.assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
        return status.Status, str(status.get("ErrorComment", ""))

    def close(self) -> None:
        self.assoc.release()


def store(world: World, order: dict, series: str, sops: list[str]) -> None:
    parts = [
        instance_bytes(order["study_instance_uid"], series, uid, "DOE^JANE", n)
        for n, uid in enumerate(sops, start=1)
    ]
    response = stow(world.url(), parts, world.auth("tech"), "ClinicA")
    assert response.status_code == 200, response.text


def wait_for_status(world: World, order: dict, status: str, timeout: float = 20) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        current = order_now(world, order)
        if current["status"] == status:
            return current
        time.sleep(0.2)
    raise AssertionError(f"order {order['id']} is {current['status']}, not {status}")


def test_completed_then_images_arrive(world: World) -> None:
    order = new_order(world, "MP1")
    mpps_uid, series, sops = generate_uid(), generate_uid(), [generate_uid(), generate_uid()]
    scu = Mpps(world)
    try:
        assert scu.create(in_progress(order), mpps_uid) == (0x0000, "")
        assert order_now(world, order)["status"] == "IN_PROGRESS"
        duplicate = scu.create(in_progress(order), mpps_uid)
        assert duplicate[0] == 0x0111
        assert scu.set(finished("COMPLETED", series, sops), mpps_uid)[0] == 0x0000
        # Completed, but the referenced instances are not stored yet.
        time.sleep(1.5)
        assert order_now(world, order)["status"] == "IN_PROGRESS"
        store(world, order, series, sops[:1])
        time.sleep(1.5)
        assert order_now(world, order)["status"] == "IN_PROGRESS"
        store(world, order, series, sops[1:])
        ready = wait_for_status(world, order, "IMAGES_READY")
        assert ready["images_attached"] is True
        # A completed step is final.
        status, comment = scu.set(finished("IN PROGRESS", series, sops), mpps_uid)
        assert status == 0x0110 and "COMPLETED" in comment
    finally:
        scu.close()
    history = httpx.get(
        f"{world.api()}/orders/{order['id']}/history", headers=world.auth("admin")
    ).json()
    assert [h["to_status"] for h in history] == ["SCHEDULED", "IN_PROGRESS", "IMAGES_READY"]
    assert history[1]["reason"] == "MPPS IN PROGRESS" and history[1]["principal"] == "dimse:PEER_A"
    assert history[2]["principal"] == "system:study-complete"


def test_images_first_then_completed_is_ready_at_once(world: World) -> None:
    order = new_order(world, "MP2")
    mpps_uid, series, sops = generate_uid(), generate_uid(), [generate_uid()]
    store(world, order, series, sops)
    assert order_now(world, order)["status"] == "IN_PROGRESS"
    scu = Mpps(world)
    try:
        assert scu.create(in_progress(order), mpps_uid)[0] == 0x0000
        assert scu.set(finished("COMPLETED", series, sops), mpps_uid)[0] == 0x0000
    finally:
        scu.close()
    # Decided in the N-SET's own transaction, not by the next worker pass.
    assert order_now(world, order)["status"] == "IMAGES_READY"


def test_discontinued(world: World) -> None:
    order = new_order(world, "MP3")
    mpps_uid = generate_uid()
    scu = Mpps(world)
    try:
        assert scu.create(in_progress(order), mpps_uid)[0] == 0x0000
        assert scu.set(finished("DISCONTINUED", generate_uid(), []), mpps_uid)[0] == 0x0000
    finally:
        scu.close()
    assert order_now(world, order)["status"] == "DISCONTINUED"


def test_bad_requests_are_failure_statuses(world: World) -> None:
    order = new_order(world, "MP4")
    scu = Mpps(world)
    try:
        completed = in_progress(order)
        completed.PerformedProcedureStepStatus = "COMPLETED"
        status, comment = scu.create(completed, generate_uid())
        assert status == 0x0106 and "IN PROGRESS" in comment
        nonsense = in_progress(order)
        nonsense.PerformedProcedureStepStatus = "HALF DONE"
        assert scu.create(nonsense, generate_uid())[0] == 0x0106
        assert scu.set(finished("COMPLETED", generate_uid(), []), generate_uid())[0] == 0x0112
        uid = generate_uid()
        assert scu.create(in_progress(order), uid)[0] == 0x0000
        bad_set = finished("FINISHED", generate_uid(), [])
        assert scu.set(bad_set, uid)[0] == 0x0106
        # Nothing was half written: the step is still IN PROGRESS and can complete.
        assert scu.set(finished("DISCONTINUED", generate_uid(), []), uid)[0] == 0x0000
    finally:
        scu.close()


def test_other_sources_and_tenants_cannot_touch_the_order(world: World) -> None:
    order = new_order(world, "MP5")
    mpps_uid = generate_uid()
    owner = Mpps(world, "PEER_A")
    try:
        assert owner.create(in_progress(order), mpps_uid)[0] == 0x0000
    finally:
        owner.close()
    for calling, called in (("PEER_B", SERVER_AET), ("ACME_PEER", "ACME")):
        other = Mpps(world, calling, called)
        try:
            # The step is invisible to them: as if it did not exist.
            assert other.set(finished("DISCONTINUED", generate_uid(), []), mpps_uid)[0] == 0x0112
            # Their own step naming this order's Study Instance UID links to nothing.
            assert other.create(in_progress(order), generate_uid())[0] == 0x0000
        finally:
            other.close()
    assert order_now(world, order)["status"] == "IN_PROGRESS"
    # A second order, untouched by PEER_B's MPPS naming it.
    untouched = new_order(world, "MP6")
    other = Mpps(world, "PEER_B")
    try:
        assert other.create(in_progress(untouched), generate_uid())[0] == 0x0000
    finally:
        other.close()
    assert order_now(world, untouched)["status"] == "SCHEDULED"


def test_c_store_attaches_to_the_order_of_its_source(world: World) -> None:
    """The DIMSE path of attaching: a modality sends the study with the worklist's Study
    Instance UID; a peer of another source sending the same UID does not attach it."""
    import io

    import pydicom

    order = new_order(world, "MP7")
    ae = AE(ae_title="PEER_B")
    ae.add_requested_context(CTImageStorage)
    data = instance_bytes(order["study_instance_uid"], generate_uid(), generate_uid(), "D", 1)
    dataset = pydicom.dcmread(io.BytesIO(data))
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title=SERVER_AET)
    try:
        assert assoc.send_c_store(dataset).Status == 0x0000
    finally:
        assoc.release()
    # Stored under ClinicB: not this ClinicA order's images.
    assert order_now(world, order)["status"] == "SCHEDULED"
    other = new_order(world, "MP8")
    ae = AE(ae_title="PEER_A")
    ae.add_requested_context(CTImageStorage)
    data = instance_bytes(other["study_instance_uid"], generate_uid(), generate_uid(), "D", 1)
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title=SERVER_AET)
    try:
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(data))).Status == 0x0000
    finally:
        assoc.release()
    attached = order_now(world, other)
    assert attached["status"] == "IN_PROGRESS" and attached["images_attached"] is True
