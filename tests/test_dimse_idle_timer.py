"""A handler slower than the network timeout does not get its association aborted
(tessera.scp.transport.count_sending_as_activity, bound in tessera.scp.server)."""

from __future__ import annotations

import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tessera.scp.transport import count_sending_as_activity

HANDLER_SECONDS = 2.5


def _ct() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "IDLE"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _slow_store(event: evt.Event) -> int:
    time.sleep(HANDLER_SECONDS)  # a big data set being ingested on a loaded machine
    return 0x0000


def _stores_after_a_slow_handler(bind_activity: bool) -> tuple[int, bool]:
    """Two C-STOREs on one association to an SCP whose network timeout (1 s) is shorter
    than its handler: the first status, and whether the association was still there."""
    scp = AE(ae_title="IDLESCP")
    scp.network_timeout = 1
    scp.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    handlers = [(evt.EVT_C_STORE, _slow_store)]
    if bind_activity:
        handlers.append((evt.EVT_DIMSE_SENT, count_sending_as_activity))
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        port = server.server_address[1]
        scu = AE(ae_title="IDLESCU")
        scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", port, ae_title="IDLESCP")
        assert assoc.is_established
        first = assoc.send_c_store(_ct())
        time.sleep(0.3)  # the SCP's reactor has had its look at the idle timer
        still_there = assoc.is_established
        if still_there:
            assoc.release()
        return int(first.Status), still_there
    finally:
        server.shutdown()


def test_a_slow_handler_keeps_its_association() -> None:
    status, still_there = _stores_after_a_slow_handler(bind_activity=True)
    assert status == 0x0000
    assert still_there, "the association was aborted after the handler answered"


@pytest.mark.parametrize("bind_activity", [False])
def test_without_it_pynetdicom_aborts_the_association(bind_activity: bool) -> None:
    """The defect this guards against, shown on the same set-up (so the test above can fail)."""
    status, still_there = _stores_after_a_slow_handler(bind_activity)
    assert status == 0x0000
    assert not still_there
