"""C-FIND details with a pynetdicom SCU: Specific Character Set both ways, C-CANCEL of a
streamed result, patient-level retrieve through the Patient Root model."""

from __future__ import annotations

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
)

from tessera import synthetic
from tessera.client.stow import multipart_stream, request_content_type
from tessera.dicomweb import multipart_writer
from tests.dimse_support import SERVER_AET, start_dimse_server

INSTANCES = 150
# The cancel test's own study: enough matches that streaming them takes far longer than the
# client's C-CANCEL round trip (with 150 the server sometimes finished first).
CANCEL_MATCHES = 2000


def stow(server, files: list[bytes], tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = []
    for index, data in enumerate(files):
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(data)
        paths.append(path)
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=b"".join(multipart_stream(paths, boundary)),
        headers={"Content-Type": request_content_type(boundary)},
        timeout=120,
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.conftest import ServerProcess

    tmp_path = tmp_path_factory.mktemp("dimse_find")
    made = []

    def factory(**kwargs):  # type: ignore[no-untyped-def]
        server = ServerProcess(
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{tmp_path / 'index.sqlite3'}",
            **kwargs,
        )
        made.append(server)
        return server

    server = start_dimse_server(factory, TESSERA_DIMSE_ACCEPT_UNKNOWN="true")
    # A patient name outside ASCII, stored as Latin-1 (ISO_IR 100).
    study = synthetic.StudySpec(patient_name="MÜLLER^HANS", patient_id="PAT-Ü")
    series = pydicom.uid.generate_uid()
    files = []
    for number in range(INSTANCES):
        ds = pydicom.dcmread(
            pydicom.filebase.DicomBytesIO(
                synthetic.ct_image(study, series, number + 1, rows=16, columns=16)
            )
        )
        ds.SpecificCharacterSet = "ISO_IR 100"
        buffer = pydicom.filebase.DicomBytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    stow(server, files, tmp_path)
    server.study_uid = study.study_instance_uid  # type: ignore[attr-defined]
    many_study, many_series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    stow(
        server,
        [
            synthetic.header_only_instance(
                {
                    "StudyInstanceUID": many_study,
                    "SeriesInstanceUID": many_series,
                    "PatientID": "PAT-MANY",
                    "Modality": "CT",
                    "InstanceNumber": number + 1,
                }
            )
            for number in range(CANCEL_MATCHES)
        ],
        tmp_path,
    )
    server.many_study_uid = many_study  # type: ignore[attr-defined]
    yield server
    for process in made:
        process.stop()


def associate(server, *contexts):  # type: ignore[no-untyped-def]
    ae = AE(ae_title="FINDSCU")
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", server.dimse_port, ae_title=SERVER_AET)
    assert assoc.is_established
    return assoc


def test_specific_character_set_both_ways(server) -> None:  # type: ignore[no-untyped-def]
    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 100"
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "MÜL*"
    identifier.StudyInstanceUID = ""
    assoc = associate(server, StudyRootQueryRetrieveInformationModelFind)
    try:
        responses = list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    pending = [ds for status, ds in responses if status and status.Status == 0xFF00]
    assert responses[-1][0].Status == 0x0000
    assert len(pending) == 1
    assert pending[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(pending[0].PatientName) == "MÜLLER^HANS"


def test_cancel_stops_a_streamed_find(server) -> None:  # type: ignore[no-untyped-def]
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = server.many_study_uid
    identifier.SOPInstanceUID = ""
    assoc = associate(server, StudyRootQueryRetrieveInformationModelFind)
    statuses = []
    try:
        responses = assoc.send_c_find(
            identifier, StudyRootQueryRetrieveInformationModelFind, msg_id=7
        )
        for status, _ds in responses:
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                context_id = assoc.accepted_contexts[0].context_id
                assoc.send_c_cancel(7, context_id)
    finally:
        assoc.release()
    assert statuses[-1] == 0xFE00, (hex(statuses[-1]), len(statuses))
    assert statuses.count(0xFF00) < CANCEL_MATCHES


def test_patient_level_find_and_get(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import CTImageStorage

    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 192"
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = "PAT-Ü"
    identifier.PatientName = ""
    assoc = associate(server, PatientRootQueryRetrieveInformationModelFind)
    try:
        responses = list(
            assoc.send_c_find(identifier, PatientRootQueryRetrieveInformationModelFind)
        )
    finally:
        assoc.release()
    pending = [ds for status, ds in responses if status.Status == 0xFF00]
    assert [str(ds.PatientName) for ds in pending] == ["MÜLLER^HANS"]

    received = []

    def on_store(event):  # type: ignore[no-untyped-def]
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        ae_title=SERVER_AET,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    get = Dataset()
    get.SpecificCharacterSet = "ISO_IR 192"
    get.QueryRetrieveLevel = "PATIENT"
    get.PatientID = "PAT-Ü"
    try:
        results = list(assoc.send_c_get(get, PatientRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    assert results[-1][0].Status == 0x0000
    assert len(received) == INSTANCES
