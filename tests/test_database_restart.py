"""PostgreSQL restarted under load (issue 18, "Bad input and faults"): two nodes over one
database and one bucket keep answering while the database is down (503 + Retry-After, never a
500, never a dropped connection), lose nothing they acknowledged, and serve again once it is
back, without being restarted.

The database is a private cluster of this test session (tests/private_postgres.py): the shared
PostgreSQL of the other tests is never restarted."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import orjson
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tessera.dicomweb.wado_metadata import BATCH
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, free_port, index_rows
from tests.dimse_support import SERVER_AET, wait_port
from tests.server_log import unhandled_errors
from tests.test_scaleout import stow

pytestmark = pytest.mark.postgres


@dataclass
class Log:
    """Every answer the clients got while the database went away and came back."""

    statuses: Counter = field(default_factory=Counter)
    without_retry_after: int = 0
    connection_errors: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # SOP Instance UIDs stored (200)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 503 and "retry-after" not in response.headers:
                self.without_retry_after += 1

    def error(self, exc: Exception) -> None:
        with self.lock:
            self.connection_errors.append(repr(exc))


def c_store(port: int, data: bytes) -> int | None:
    """One C-STORE over its own association; the status, or None when the association was
    refused or aborted."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title="RESTARTSCU")
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title=SERVER_AET)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(dataset)
        return int(status.Status) if "Status" in status else None
    finally:
        if assoc.is_established:
            assoc.release()


@pytest.fixture
def nodes(private_postgres, seaweedfs, tmp_path):  # type: ignore[no-untyped-def]
    url = private_postgres.create_database(f"restart_{generate_uid()[-8:].replace('.', '')}")
    prefix = seaweedfs.new_prefix()
    made = []
    try:
        for i in range(2):
            dimse_port = free_port()
            node = ServerProcess(
                data_dir=tmp_path / f"node{i}",
                database_url=url,
                env_extra=seaweedfs.env(
                    prefix,
                    TESSERA_WORKERS="1",
                    TESSERA_DIMSE_PORT=str(dimse_port),
                    TESSERA_DIMSE_ACCEPT_UNKNOWN="true",
                ),
            )
            node.dimse_port = dimse_port  # type: ignore[attr-defined]
            made.append(node)
            node.start(timeout=120)
            wait_port(dimse_port)
        yield made
    finally:
        for node in made:
            node.stop()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_nodes_ride_out_a_database_restart(nodes, private_postgres, mode) -> None:  # type: ignore[no-untyped-def]
    """`fast`: a clean restart (sessions terminated); `immediate`: as a crash (WAL recovery)."""
    study = StudySpec(patient_name="RESTART^DB")
    series = generate_uid()
    before = [ct_image(study, series, n, rows=32, columns=32) for n in range(1, 4)]
    assert stow(nodes[0].base_url, before).status_code == 200
    pids = [node.process.pid for node in nodes]

    log = Log()
    stop = threading.Event()
    writes = [ct_image(study, series, n, rows=32, columns=32) for n in range(10, 400)]
    next_write = iter(range(len(writes)))
    write_lock = threading.Lock()

    def writer(node: ServerProcess) -> None:
        """A client storing one new instance after another, each until it is acknowledged."""
        while not stop.is_set():
            with write_lock:
                n = next(next_write, None)
            if n is None:
                return
            uid = str(pydicom.dcmread(io.BytesIO(writes[n])).SOPInstanceUID)
            while not stop.is_set():
                try:
                    response = stow(node.base_url, [writes[n]], timeout=30)
                except httpx.HTTPError as exc:
                    log.error(exc)
                    break
                log.answer(response)
                if response.status_code == 200:
                    with log.lock:
                        log.acknowledged.append(uid)
                    break
                time.sleep(0.2)

    def reader(node: ServerProcess) -> None:
        while not stop.is_set():
            try:
                for path in (
                    "/dicomweb/studies?PatientName=RESTART*",
                    f"/dicomweb/studies/{study.study_instance_uid}/series",
                    f"/dicomweb/studies/{study.study_instance_uid}/metadata",
                ):
                    log.answer(httpx.get(node.base_url + path, timeout=30))
            except httpx.HTTPError as exc:
                log.error(exc)
            time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(node,)) for node in nodes]
    threads += [threading.Thread(target=reader, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        private_postgres.stop(mode)
        # While the database is down: every node answers, with 503 and Retry-After.
        for node in nodes:
            health = httpx.get(f"{node.base_url}/healthz", timeout=30)
            assert health.status_code == 503
            refused = stow(node.base_url, [ct_image(study, series, 999, rows=32, columns=32)])
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) > 0
            search = httpx.get(f"{node.dicomweb}/studies", timeout=30)
            assert search.status_code == 503 and "retry-after" in search.headers
        # C-STORE fails cleanly (refused, or a failure status), the listener stays up.
        assert c_store(nodes[1].dimse_port, ct_image(study, series, 998, rows=32, columns=32)) != 0
        time.sleep(2)
        private_postgres.start()
        # Service resumes by itself: within seconds every node serves again.
        deadline = time.time() + 30
        for node in nodes:
            while httpx.get(f"{node.base_url}/healthz", timeout=30).status_code != 200:
                assert time.time() < deadline, "a node did not recover"
                time.sleep(0.2)
        time.sleep(3)  # load after the restart, on the recovered pools
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    print(f"answers: {dict(log.statuses)}; acknowledged: {len(log.acknowledged)}")
    # Nothing but 200 and 503 (with Retry-After) was answered; no node dropped a connection.
    assert log.connection_errors == []
    assert set(log.statuses) <= {200, 503}, (
        log.statuses,
        [unhandled_errors(node.log()) for node in nodes],
    )
    assert log.statuses[503] > 0, "the clients never saw the outage"
    assert log.without_retry_after == 0
    # The nodes were not restarted.
    assert [node.process.pid for node in nodes] == pids and all(n.alive() for n in nodes)
    # Everything acknowledged is in the index, and each node serves it (bytes from the bucket).
    stored = {
        row[0] for row in index_rows(nodes[0].database_url, "SELECT sop_instance_uid FROM instance")
    }
    assert set(log.acknowledged) <= stored
    assert len(log.acknowledged) >= 2
    after = ct_image(study, series, 997, rows=32, columns=32)
    assert stow(nodes[1].base_url, [after]).status_code == 200
    assert c_store(nodes[0].dimse_port, ct_image(study, series, 996, rows=32, columns=32)) == 0
    for node in nodes:
        metadata = httpx.get(
            f"{node.dicomweb}/studies/{study.study_instance_uid}/metadata", timeout=30
        )
        assert metadata.status_code == 200
        assert len(metadata.json()) == len(stored) + 2
        retrieved = httpx.get(
            f"{node.dicomweb}/studies/{study.study_instance_uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"'},
            timeout=60,
        )
        assert retrieved.status_code == 200 and before[0] in retrieved.content


def _with_text(data: bytes, size: int) -> bytes:
    """An instance whose DICOM JSON is about `size` bytes larger (Text Value, UT)."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.TextValue = "x" * size
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_metadata_stream_under_way_waits_for_the_database(nodes, private_postgres) -> None:  # type: ignore[no-untyped-def]
    """WADO-RS metadata of a study larger than one batch: the status and the first batch are
    sent, then the database is stopped for two seconds. The stream pauses and completes; it
    is not cut off after its 200 (tessera.dicomweb.streaming.riding_out)."""
    study = StudySpec(patient_name="PAUSE^DB")
    series = generate_uid()
    # Three batches of about 10 MB of DICOM JSON each: the first fills the socket buffers
    # (about 4 MB here) and the server's write buffer; the second waits to be sent; the third
    # is read only once the client reads.
    count = 3 * BATCH
    parts = [
        _with_text(ct_image(study, series, n, rows=8, columns=8), 40_000) for n in range(count)
    ]
    for start in range(0, count, 125):
        assert stow(nodes[0].base_url, parts[start : start + 125]).status_code == 200
    url = f"{nodes[0].dicomweb}/studies/{study.study_instance_uid}/metadata"
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        # Nothing of the body is read yet: the server is blocked sending the first batches.
        # The client reads on while the database is down, for two seconds.
        private_postgres.stop("fast")
        restart = threading.Timer(2, private_postgres.start)
        restart.start()
        try:
            body = response.read()
        finally:
            restart.join()
    instances = orjson.loads(body)
    assert len(instances) == count
    assert {i["00080018"]["Value"][0] for i in instances} == {
        str(pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID) for p in parts
    }
