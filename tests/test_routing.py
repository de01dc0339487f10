"""Routing rules against real parts: a second real Tessera server (STOW-RS) that goes down
for a while and comes back, and dcmtk's storescp (C-STORE, transcoding to what it accepts);
backlog, per-instance state, send again, study-complete trigger, bad input."""

from __future__ import annotations

import http.server
import io
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

from tessera.index import changes
from tessera.index.database import Database
from tessera.synthetic import StudySpec, mr_rle_image
from tests.conftest import ServerProcess, free_port, index_rows
from tests.dimse_support import dcmtk, wait_port
from tests.events_support import START_TIMEOUT, ct_study, stow_parts, tessera_cli
from tests.security_world import PASSWORD, admin_cli

ROUTING_ENV = {
    "TESSERA_WORKERS": "1",
    "TESSERA_OUTBOUND_ALLOW_PRIVATE": "true",
    "TESSERA_DELIVERY_RETRY_BASE_SECONDS": "0.3",
}


@pytest.fixture
def archive(server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    return server_factory(env_extra=ROUTING_ENV).start(timeout=START_TIMEOUT)


def api(server: ServerProcess) -> str:
    return f"{server.base_url}/api/v1"


def add_route(server: ServerProcess, **body) -> dict:  # type: ignore[no-untyped-def]
    response = httpx.post(f"{api(server)}/routes", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def route(server: ServerProcess, name: str) -> dict:
    return httpx.get(f"{api(server)}/routes/{name}", timeout=30).json()


def wait_backlog(server: ServerProcess, name: str, delivered: int, timeout: float = 90) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = route(server, name)
        if found["backlog"]["delivered"] >= delivered and found["backlog"]["pending"] == 0:
            return found
        time.sleep(0.2)
    raise AssertionError(f"route {name} did not deliver {delivered}: {route(server, name)}")


def instance_count(server: ServerProcess) -> int:
    return index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0]


def test_stow_rs_to_a_second_tessera_survives_its_downtime(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    destination = ServerProcess(
        data_dir=tmp_path / "destination",
        database_url=f"sqlite:///{tmp_path / 'destination.sqlite3'}",
        env_extra={"TESSERA_WORKERS": "1"},
    )
    (tmp_path / "destination").mkdir()
    key = admin_cli(destination, "bootstrap", "--system-admin", "--password", PASSWORD)["api_key"]
    destination.start(timeout=START_TIMEOUT)
    try:
        rule = add_route(
            archive,
            name="to-specialists",
            destination={
                "kind": "dicomweb",
                "url": destination.dicomweb,
                "authorization": f"Bearer {key}",
            },
        )
        assert rule["destination"]["authorization"] is True  # set, never shown
        assert key not in str(rule) and key not in archive.log()
        spec = StudySpec()
        stow_parts(archive.dicomweb, ct_study(5, spec))
        wait_backlog(archive, "to-specialists", 5)
        assert instance_count(destination) == 5

        destination.stop()  # down for a while
        later = ct_study(3, spec)
        stow_parts(archive.dicomweb, later)
        deadline = time.time() + 60
        while time.time() < deadline:
            pending = httpx.get(
                f"{api(archive)}/routes/to-specialists/deliveries",
                params={"status": "pending"},
                timeout=30,
            ).json()
            if len(pending) == 3 and all(d["attempts"] >= 2 for d in pending):
                break
            time.sleep(0.2)
        assert len(pending) == 3 and all("STOW-RS failed" in d["last_error"] for d in pending)
        assert route(archive, "to-specialists")["backlog"] == {
            "pending": 3,
            "delivered": 5,
            "dead": 0,
        }

        destination.start(timeout=START_TIMEOUT)  # back, same port and data
        wait_backlog(archive, "to-specialists", 8)
        assert instance_count(destination) == 8

        # "Send this study again": every instance once more; the destination keeps one copy.
        again = httpx.post(
            f"{api(archive)}/routes/to-specialists/send",
            json={"study_instance_uid": spec.study_instance_uid},
            timeout=30,
        )
        assert again.status_code == 202 and again.json() == {"queued": 8}
        wait_backlog(archive, "to-specialists", 8)
        assert instance_count(destination) == 8
        found = httpx.get(
            f"{destination.dicomweb}/studies/{spec.study_instance_uid}/instances", timeout=30
        ).json()
        assert len(found) == 8
    finally:
        destination.stop()


def _storescp(tmp_path: Path, port: int) -> subprocess.Popen:
    """dcmtk's storescp (never pynetdicom's app of the same name on PATH); by default it
    accepts uncompressed transfer syntaxes only, so RLE must be transcoded."""
    out = tmp_path / "received"
    out.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "STORESCP", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return process


class _Sink(http.server.BaseHTTPRequestHandler):
    """A DICOMweb destination that keeps each STOW-RS request's headers and body."""

    requests: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        _Sink.requests.append(
            ({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_stow_rs_request_states_its_length_and_carries_the_stored_files(archive) -> None:  # type: ignore[no-untyped-def]
    """The routed STOW-RS request is streamed from the stored files (never built whole in
    memory) with its whole length stated up front, not chunked (some archives refuse a
    chunked body); its parts are the stored files, byte for byte."""
    parts = ct_study(3, size=64)
    assert stow_parts(archive.dicomweb, parts).status_code == 200
    study = pydicom.dcmread(io.BytesIO(parts[0])).StudyInstanceUID
    _Sink.requests = []  # this test's requests only
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{sink.server_address[1]}/dicomweb"
        add_route(archive, name="sink", destination={"kind": "dicomweb", "url": url})
        sent = httpx.post(
            f"{api(archive)}/routes/sink/send", json={"study_instance_uid": study}, timeout=30
        )
        assert sent.status_code == 202, sent.text
        wait_backlog(archive, "sink", 3)
    finally:
        sink.shutdown()
    [(headers, body)] = _Sink.requests
    assert "transfer-encoding" not in headers and int(headers["content-length"]) == len(body)
    boundary = re.search(r"boundary=([^;\s]+)", headers["content-type"]).group(1)
    assert body.endswith(f"--{boundary}--\r\n".encode())
    received = [
        chunk.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
        for chunk in body.split(f"--{boundary}".encode())[1:-1]
    ]
    assert sorted(received) == sorted(parts)


def test_c_store_to_storescp_with_modality_condition_and_transcoding(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    storescp = _storescp(tmp_path, port)
    try:
        add_route(
            archive,
            name="mr-to-pacs",
            conditions={"modalities": ["MR"]},
            destination={
                "kind": "dimse",
                "ae_title": "STORESCP",
                "host": "127.0.0.1",
                "port": port,
            },
        )
        mr = StudySpec()
        series = generate_uid()
        stow_parts(archive.dicomweb, [mr_rle_image(mr, series, n, 32) for n in (1, 2)])
        stow_parts(archive.dicomweb, ct_study(2))  # CT: not routed
        wait_backlog(archive, "mr-to-pacs", 2)
        files = sorted((tmp_path / "received").iterdir())
        assert len(files) == 2
        for path in files:
            ds = pydicom.dcmread(path)
            assert ds.Modality == "MR" and ds.StudyInstanceUID == mr.study_instance_uid
            assert ds.file_meta.TransferSyntaxUID in (
                ExplicitVRLittleEndian,
                ImplicitVRLittleEndian,
            )
            assert ds.file_meta.TransferSyntaxUID != RLELossless
            assert ds.pixel_array.shape == (32, 32)
    finally:
        storescp.terminate()
        storescp.wait(10)


def test_study_complete_trigger_sends_the_whole_study(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    storescp = _storescp(tmp_path, port)
    try:
        add_route(
            archive,
            name="complete-studies",
            trigger="study_complete",
            destination={
                "kind": "dimse",
                "ae_title": "STORESCP",
                "host": "127.0.0.1",
                "port": port,
            },
        )
        spec = StudySpec()
        stow_parts(archive.dicomweb, ct_study(3, spec))
        time.sleep(1.5)
        assert list((tmp_path / "received").iterdir()) == []  # not complete yet
        # What the orders module does when it decides the study is complete.
        database = Database(archive.database_url)
        try:
            with database.write() as conn:
                source_pk = conn.exec_driver_sql(
                    "SELECT id FROM source WHERE name='default'"
                ).scalar()
                tenant_id = conn.exec_driver_sql(
                    "SELECT id FROM tenant WHERE name='default'"
                ).scalar()
                changes.record_change(
                    conn, tenant_id, source_pk, changes.STUDY_COMPLETE, spec.study_instance_uid
                )
        finally:
            database.dispose()
        wait_backlog(archive, "complete-studies", 3)
        assert len(list((tmp_path / "received").iterdir())) == 3
    finally:
        storescp.terminate()
        storescp.wait(10)


def test_unreachable_peer_is_retried_then_dead_lettered_then_replayed(
    server_factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    archive = server_factory(
        env_extra={**ROUTING_ENV, "TESSERA_DELIVERY_MAX_AGE_SECONDS": "3"}
    ).start(timeout=START_TIMEOUT)
    port = free_port()
    add_route(
        archive,
        name="flaky",
        destination={"kind": "dimse", "ae_title": "STORESCP", "host": "127.0.0.1", "port": port},
    )
    stow_parts(archive.dicomweb, ct_study(2))
    deadline = time.time() + 60
    while route(archive, "flaky")["backlog"]["dead"] < 2 and time.time() < deadline:
        time.sleep(0.2)
    dead = httpx.get(
        f"{api(archive)}/routes/flaky/deliveries", params={"status": "dead"}, timeout=30
    ).json()
    assert len(dead) == 2 and all("not established" in d["last_error"] for d in dead)
    # Paged newest first: `before` continues after the previous page's last id.
    deliveries = f"{api(archive)}/routes/flaky/deliveries"
    [newest] = httpx.get(deliveries, params={"limit": 1}, timeout=30).json()
    [older] = httpx.get(deliveries, params={"limit": 1, "before": newest["id"]}, timeout=30).json()
    assert [newest["id"], older["id"]] == [d["id"] for d in dead] and older["id"] < newest["id"]
    assert httpx.get(deliveries, params={"before": older["id"]}, timeout=30).json() == []
    storescp = _storescp(tmp_path, port)
    try:
        [listed] = tessera_cli(archive, "routes", "list")
        assert listed["name"] == "flaky" and listed["backlog"]["dead"] == 2
        assert tessera_cli(archive, "routes", "replay", "flaky") == {"replayed": 2}
        wait_backlog(archive, "flaky", 2)
        assert len(list((tmp_path / "received").iterdir())) == 2
    finally:
        storescp.terminate()
        storescp.wait(10)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("routes-guarded")
    made = ServerProcess(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'index.sqlite3'}",
        env_extra={"TESSERA_WORKERS": "1"},
    ).start(timeout=START_TIMEOUT)
    yield made
    made.stop()


DIMSE = {"kind": "dimse", "ae_title": "PACS", "host": "8.8.8.8", "port": 104}


@pytest.mark.parametrize(
    "body,status,named",
    [
        ({"name": "a b", "destination": DIMSE}, 400, "name"),
        ({"name": "r", "trigger": "sometimes", "destination": DIMSE}, 400, "trigger"),
        ({"name": "r"}, 400, "destination"),
        ({"name": "r", "destination": {"kind": "ftp"}}, 400, "destination.kind"),
        ({"name": "r", "destination": {**DIMSE, "port": 70000}}, 400, "port"),
        ({"name": "r", "destination": {**DIMSE, "ae_title": "A" * 17}}, 400, "ae_title"),
        ({"name": "r", "destination": {**DIMSE, "host": "127.0.0.1"}}, 400, "loopback/private"),
        (
            {"name": "r", "destination": {"kind": "dicomweb", "url": "http://10.0.0.5/dicomweb"}},
            400,
            "loopback/private",
        ),
        ({"name": "r", "conditions": {"colour": []}, "destination": DIMSE}, 400, "colour"),
        (
            {"name": "r", "conditions": {"sources": ["Nowhere"]}, "destination": DIMSE},
            400,
            "Nowhere",
        ),
    ],
)
def test_bad_rules_are_400_naming_the_problem(guarded, body, status, named) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(f"{api(guarded)}/routes", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]


def test_rule_conflicts_and_unknowns(guarded) -> None:  # type: ignore[no-untyped-def]
    base = api(guarded)
    body = {"name": "dup", "destination": DIMSE}
    assert httpx.post(f"{base}/routes", json=body, timeout=30).status_code == 201
    assert httpx.post(f"{base}/routes", json=body, timeout=30).status_code == 409
    assert httpx.get(f"{base}/routes/nope", timeout=30).status_code == 404
    assert httpx.get(f"{base}/routes/dup/deliveries?status=lost", timeout=30).status_code == 400
    assert httpx.get(f"{base}/routes/dup/deliveries?before=soon", timeout=30).status_code == 400
    missing = httpx.post(
        f"{base}/routes/dup/send", json={"study_instance_uid": "1.2.3"}, timeout=30
    )
    assert missing.status_code == 404
    assert httpx.post(f"{base}/routes/dup/send", json={}, timeout=30).status_code == 400
    assert httpx.delete(f"{base}/routes/dup", timeout=30).status_code == 204
    assert httpx.delete(f"{base}/routes/dup", timeout=30).status_code == 404
