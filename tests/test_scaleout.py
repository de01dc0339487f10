"""Several nodes: `tessera serve` processes with their own data folders (no shared disk) over
one PostgreSQL and one bucket (a real SeaweedFS), behind a real HAProxy."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pydicom
import pytest
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.index.database import Database
from tessera.index.run_once import run_once_across_nodes
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import (
    PG_URL,
    ServerProcess,
    create_pg_database,
    drop_pg_database,
    free_port,
    index_rows,
)
from tests.dimse_support import dcmtk, wait_port
from tests.webhook_receiver import Receiver

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="TESSERA_TEST_PG_URL not set"),
    pytest.mark.skipif(
        not Path(HAPROXY).exists(), reason="apt-get install -y haproxy (.ci/run does)"
    ),
]


class Balancer:
    """HAProxy in front of the nodes: round robin, health checks on /healthz; for nodes with
    a DIMSE listener also a TCP frontend (`dimse_port`) spreading associations over them."""

    def __init__(self, workdir: Path, nodes: list[ServerProcess]) -> None:
        self.port = free_port()
        servers = "\n".join(
            f"    server n{i} 127.0.0.1:{node.port} check inter 300ms fall 2 rise 2"
            for i, node in enumerate(nodes)
        )
        dimse_ports = [getattr(node, "dimse_port", 0) for node in nodes]
        self.dimse_port = free_port() if all(dimse_ports) else 0
        dimse = ""
        if self.dimse_port:
            dimse_servers = "\n".join(
                f"    server d{i} 127.0.0.1:{port} check port {node.port} inter 300ms fall 2 rise 2"
                for i, (node, port) in enumerate(zip(nodes, dimse_ports, strict=True))
            )
            # TCP mode: an association stays on the node it reached; the node's health is its
            # HTTP /healthz (a bare TCP probe would open and drop connections on the listener).
            dimse = f"""frontend dimse
    mode tcp
    bind 127.0.0.1:{self.dimse_port}
    default_backend dimse_nodes
backend dimse_nodes
    mode tcp
    balance roundrobin
    option httpchk GET /healthz
{dimse_servers}
"""
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            f"""global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch
frontend dicomweb
    bind 127.0.0.1:{self.port}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /healthz
{servers}
{dimse}"""
        )
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("haproxy did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@contextlib.contextmanager
def two_nodes(seaweedfs, folder: Path) -> Iterator[tuple[list[ServerProcess], Balancer]]:  # type: ignore[no-untyped-def]
    """Two nodes over one PostgreSQL database and one bucket prefix, and the balancer."""
    url = create_pg_database()
    store_env = seaweedfs.env(
        TESSERA_WORKERS="1",
        # Webhooks to the test's receiver on loopback; retries soon.
        TESSERA_OUTBOUND_ALLOW_PRIVATE="true",
        TESSERA_DELIVERY_RETRY_BASE_SECONDS="0.5",
    )
    nodes = []
    for i in range(2):
        dimse_port = free_port()  # each node's own DIMSE listener, as on its own machine
        node = ServerProcess(
            data_dir=folder / f"node{i}",
            database_url=url,
            env_extra={**store_env, "TESSERA_DIMSE_PORT": str(dimse_port)},
        )
        node.dimse_port = dimse_port  # type: ignore[attr-defined]
        nodes.append(node)
    try:
        # The first node migrates the schema; the second starts on it.
        nodes[0].start(timeout=120)
        nodes[1].start(timeout=120)
        for node in nodes:
            wait_port(node.dimse_port)  # type: ignore[attr-defined]
        balancer = Balancer(folder, nodes)
        try:
            yield nodes, balancer
        finally:
            balancer.stop()
    finally:
        for node in nodes:
            node.stop()
        drop_pg_database(url)


@pytest.fixture
def cluster(seaweedfs, tmp_path):  # type: ignore[no-untyped-def]
    """A cluster of this test alone (it may kill a node)."""
    with two_nodes(seaweedfs, tmp_path) as made:
        yield made


@pytest.fixture(scope="module")
def shared_cluster(seaweedfs, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One cluster for the tests that leave the nodes running (each uses its own study)."""
    with two_nodes(seaweedfs, tmp_path_factory.mktemp("cluster")) as made:
        yield made


def study_instance_count(url: str, study_instance_uid: str) -> int:
    return index_rows(
        url,
        "SELECT count(*) FROM instance i JOIN study s ON s.id = i.study_pk "
        "WHERE s.study_instance_uid = :uid",
        uid=study_instance_uid,
    )[0][0]


def stow(base: str, parts: list[bytes], timeout: float = 60) -> httpx.Response:
    boundary = multipart_writer.new_boundary()
    return httpx.post(
        f"{base}/dicomweb/studies",
        content=multipart_writer.body(boundary, parts),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=timeout,
    )


def stow_with_retries(base: str, data: bytes, deadline: float) -> int:
    """What a client does behind a balancer: send again on a connection error or 5xx."""
    while True:
        try:
            response = stow(base, [data], timeout=20)
            if response.status_code < 500:
                return response.status_code
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            return 0
        time.sleep(0.3)


def test_concurrent_stow_of_one_study_through_different_nodes(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    nodes, balancer = shared_cluster
    study = StudySpec(patient_name="SCALE^OUT")
    series = [generate_uid() for _ in range(2)]
    instances = [ct_image(study, series[n % 2], n, rows=32, columns=32) for n in range(1, 25)]
    targets = [nodes[0].base_url, nodes[1].base_url, balancer.url]
    # Every instance sent twice, through different entry points, all at once.
    jobs = [(targets[i % 3], data) for i, data in enumerate(instances)]
    jobs += [(targets[(i + 1) % 3], data) for i, data in enumerate(instances)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda job: stow(job[0], [job[1]]).status_code, jobs))
    assert codes == [200] * len(jobs)
    url, uid = nodes[0].database_url, study.study_instance_uid
    assert study_instance_count(url, uid) == 24
    [(series_count, instance_count)] = index_rows(
        url,
        "SELECT number_of_study_related_series, number_of_study_related_instances FROM study "
        "WHERE study_instance_uid = :uid",
        uid=uid,
    )
    assert (series_count, instance_count) == (2, 24)
    per_series = index_rows(
        url,
        "SELECT se.number_of_series_related_instances FROM series se "
        "JOIN study s ON s.id = se.study_pk WHERE s.study_instance_uid = :uid ORDER BY 1",
        uid=uid,
    )
    assert [r[0] for r in per_series] == [12, 12]
    # Each node serves what the other stored (the bucket is shared, the disks are not).
    for node in nodes:
        found = httpx.get(
            f"{node.dicomweb}/studies/{study.study_instance_uid}/metadata", timeout=30
        ).json()
        assert len(found) == 24
    assert not list((nodes[0].data_dir / "blobs").rglob("*.dcm"))


def test_sigkill_a_node_mid_request_loses_nothing_acknowledged(cluster) -> None:  # type: ignore[no-untyped-def]
    nodes, balancer = cluster
    study = StudySpec(patient_name="SCALE^KILL")
    series = generate_uid()
    instances = [ct_image(study, series, n, rows=128, columns=128) for n in range(1, 41)]
    deadline = time.time() + 120
    acknowledged: list[int] = []

    def send(n: int) -> int:
        code = stow_with_retries(balancer.url, instances[n], deadline)
        if code == 200:
            acknowledged.append(n)
        return code

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(send, n) for n in range(len(instances))]
        while len(acknowledged) < 8 and time.time() < deadline:
            time.sleep(0.05)
        nodes[0].kill()  # mid-request: four clients are sending
        codes = [f.result() for f in futures]
    assert codes == [200] * len(instances)
    stored = study_instance_count(nodes[1].database_url, study.study_instance_uid)
    assert stored == len(instances)
    # The surviving node serves every instance's bytes from the bucket.
    metadata = httpx.get(
        f"{balancer.url}/dicomweb/studies/{study.study_instance_uid}/metadata", timeout=30
    )
    assert metadata.status_code == 200 and len(metadata.json()) == len(instances)
    retrieved = httpx.get(
        f"{balancer.url}/dicomweb/studies/{study.study_instance_uid}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        timeout=60,
    )
    assert retrieved.status_code == 200
    for data in instances:
        assert data in retrieved.content


def test_orphan_sweep_runs_on_one_node_at_a_time() -> None:
    url = create_pg_database()
    first, second = Database(url), Database(url)
    try:
        with run_once_across_nodes(first, "sweep-orphans") as mine:
            assert mine
            with run_once_across_nodes(second, "sweep-orphans") as theirs:
                assert not theirs
            with run_once_across_nodes(second, "another-job") as other:
                assert other
        with run_once_across_nodes(second, "sweep-orphans") as now_mine:
            assert now_mine
    finally:
        first.dispose()
        second.dispose()
        drop_pg_database(url)


def _dcmtk(tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([dcmtk(tool), *args], capture_output=True, text=True, timeout=timeout)


def test_dimse_store_on_one_node_find_move_get_on_the_other(shared_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """C-STORE to node 0 (storescu); C-FIND, C-MOVE and C-GET through node 1 (findscu,
    movescu into a storescp, getscu): one PostgreSQL, one bucket, no shared disk. Then
    C-STORE and C-FIND through HAProxy in TCP mode in front of both listeners."""
    nodes, balancer = shared_cluster
    storescp_port = free_port()
    received = tmp_path / "storescp"
    received.mkdir()
    storescp = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "VIEWER", "-od", str(received), str(storescp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(storescp_port)
        # The peers are registered through node 0's admin API; node 1 uses them at once.
        for title, port in (("MODALITY", 0), ("VIEWER", storescp_port)):
            answer = httpx.put(
                f"{nodes[0].base_url}/api/v1/peers/{title}",
                json={"host": "127.0.0.1", "port": port},
                timeout=30,
            )
            assert answer.status_code in (200, 201), answer.text
        study = StudySpec(patient_name="DIMSE^NODES")
        series = generate_uid()
        instances = [ct_image(study, series, n, rows=64, columns=64) for n in range(1, 6)]
        folder = tmp_path / "to-store"
        folder.mkdir()
        paths = []
        for n, data in enumerate(instances):
            path = folder / f"{n}.dcm"
            path.write_bytes(data)
            paths.append(str(path))
        node0, node1 = (str(node.dimse_port) for node in nodes)  # type: ignore[attr-defined]
        stored = _dcmtk(
            "storescu", "-aet", "MODALITY", "-aec", "TESSERA", "127.0.0.1", node0, *paths
        )
        assert stored.returncode == 0, stored.stdout + stored.stderr
        assert study_instance_count(nodes[0].database_url, study.study_instance_uid) == 5

        out = tmp_path / "found"
        out.mkdir()
        found = _dcmtk(
            "findscu", "-S", "-aet", "VIEWER", "-aec", "TESSERA", "-X", "-od", str(out),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=DIMSE*",
            "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances",
            "127.0.0.1", node1,
        )  # fmt: skip
        assert found.returncode == 0, found.stdout + found.stderr
        answers = [pydicom.dcmread(p) for p in out.iterdir()]
        assert [a.StudyInstanceUID for a in answers] == [study.study_instance_uid]
        assert int(answers[0].NumberOfStudyRelatedInstances) == 5

        moved = _dcmtk(
            "movescu", "-S", "-aet", "VIEWER", "-aec", "TESSERA", "-aem", "VIEWER",
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.study_instance_uid}",
            "127.0.0.1", node1,
        )  # fmt: skip
        assert moved.returncode == 0, moved.stdout + moved.stderr
        got_by_move = {pydicom.dcmread(p).SOPInstanceUID for p in received.iterdir()}

        got = tmp_path / "got"
        got.mkdir()
        fetched = _dcmtk(
            "getscu", "-S", "-aet", "VIEWER", "-aec", "TESSERA", "-od", str(got),
            "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study.study_instance_uid}",
            "-k", f"SeriesInstanceUID={series}",
            "127.0.0.1", node1,
        )  # fmt: skip
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        by_get = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in got.iterdir()}
        sent = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in paths}
        assert got_by_move == set(sent) == set(by_get)
        for uid, original in sent.items():
            assert by_get[uid].PixelData == original.PixelData
        # Node 1 read the files from the bucket: it has none on its own disk.
        assert not [p for p in nodes[1].data_dir.rglob("*.dcm")]

        # Through HAProxy in TCP mode: associations spread over both nodes, one archive.
        def associations(node: ServerProcess) -> int:
            return sum(
                1
                for line in node.log().splitlines()
                if "association requested" in line and "MODALITY" in line
            )

        before = [associations(node) for node in nodes]
        more = [ct_image(study, series, n, rows=64, columns=64) for n in range(6, 10)]
        for n, data in enumerate(more):
            path = folder / f"more{n}.dcm"
            path.write_bytes(data)
            sent_again = _dcmtk(
                "storescu", "-aet", "MODALITY", "-aec", "TESSERA",
                "127.0.0.1", str(balancer.dimse_port), str(path),
            )  # fmt: skip
            assert sent_again.returncode == 0, sent_again.stdout + sent_again.stderr
        gained = [associations(node) - was for node, was in zip(nodes, before, strict=True)]
        assert sum(gained) == 4 and min(gained) >= 1, gained  # round robin: 2 and 2
        out = tmp_path / "found-through-balancer"
        out.mkdir()
        found = _dcmtk(
            "findscu", "-S", "-aet", "VIEWER", "-aec", "TESSERA", "-X", "-od", str(out),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.study_instance_uid}",
            "-k", "NumberOfStudyRelatedInstances",
            "127.0.0.1", str(balancer.dimse_port),
        )  # fmt: skip
        assert found.returncode == 0, found.stdout + found.stderr
        [answer] = [pydicom.dcmread(p) for p in out.iterdir()]
        assert int(answer.NumberOfStudyRelatedInstances) == 9
    finally:
        storescp.terminate()
        storescp.wait(10)


def _corrected(study: StudySpec, original: bytes, rows: int) -> bytes:
    """A corrected object under the original's SOP Instance UID: other pixels, another size,
    another window."""
    first = pydicom.dcmread(io.BytesIO(original))
    fixed = pydicom.dcmread(
        io.BytesIO(ct_image(study, first.SeriesInstanceUID, 1, rows, rows, seed=99))
    )
    fixed.SOPInstanceUID = first.SOPInstanceUID
    fixed.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    fixed.WindowCenter = 300
    out = io.BytesIO()
    fixed.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_what_a_node_caches_stays_correct_when_another_node_changes_the_data(
    shared_cluster,
) -> None:  # type: ignore[no-untyped-def]
    """Node 1 answers (and its caches fill); node 0 adds an instance and corrects one; node 1's
    next answers, validators included, are the new ones."""
    nodes, _balancer = shared_cluster
    writer, reader = nodes[0].base_url, nodes[1].base_url
    study = StudySpec(patient_name="CACHE^COHERENT")
    series = generate_uid()
    first, second = (ct_image(study, series, n, rows=32, columns=32) for n in (1, 2))
    assert stow(writer, [first, second]).status_code == 200
    uid = str(pydicom.dcmread(io.BytesIO(first)).SOPInstanceUID)
    study_url = f"{reader}/dicomweb/studies/{study.study_instance_uid}"
    series_url = f"{study_url}/series/{series}"
    instance_url = f"{series_url}/instances/{uid}"

    def get(url: str, accept: str, etag: str | None = None) -> httpx.Response:
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        return httpx.get(url, headers=headers, timeout=30)

    json_type = "application/dicom+json"
    metadata = get(f"{series_url}/metadata", json_type)
    assert metadata.status_code == 200 and len(metadata.json()) == 2
    # The validator works on the reading node (a 304 while nothing changed).
    assert get(f"{series_url}/metadata", json_type, metadata.headers["etag"]).status_code == 304
    frame = get(f"{instance_url}/frames/1", "application/octet-stream")
    rendered = get(f"{instance_url}/rendered", "image/png")
    instance_meta = get(f"{instance_url}/metadata", json_type)
    assert frame.status_code == rendered.status_code == instance_meta.status_code == 200
    assert len(frame.content) == 32 * 32 * 2

    # Node 0 adds an instance to the series: node 1's collection answers change.
    third = ct_image(study, series, 3, rows=32, columns=32)
    assert stow(writer, [third]).status_code == 200
    again = get(f"{series_url}/metadata", json_type, metadata.headers["etag"])
    assert again.status_code == 200 and len(again.json()) == 3
    assert again.headers["etag"] != metadata.headers["etag"]
    counts = httpx.get(
        f"{reader}/dicomweb/studies",
        params={"StudyInstanceUID": study.study_instance_uid},
        timeout=30,
    ).json()
    assert counts[0]["00201208"]["Value"] == [3]

    # The tenant's policy is changed on node 1; node 0 applies it to the correction it stores.
    policy = httpx.put(
        f"{reader}/api/v1/policies", json={"duplicate_policy": "overwrite"}, timeout=30
    )
    assert policy.status_code == 200, policy.text
    corrected = _corrected(study, first, rows=48)
    assert stow(writer, [corrected]).status_code == 200
    # Node 1 serves the corrected object: metadata, frame (size from the new pixel
    # description, not a cached one), rendered image; old validators do not match.
    meta_now = get(f"{instance_url}/metadata", json_type, instance_meta.headers["etag"])
    assert meta_now.status_code == 200
    assert meta_now.json()[0]["00280010"]["Value"] == [48]  # Rows
    assert meta_now.json()[0]["00281050"]["Value"] == [300]  # Window Center
    frame_now = get(f"{instance_url}/frames/1", "application/octet-stream", frame.headers["etag"])
    assert frame_now.status_code == 200 and len(frame_now.content) == 48 * 48 * 2
    rendered_now = get(f"{instance_url}/rendered", "image/png", rendered.headers["etag"])
    assert rendered_now.status_code == 200 and rendered_now.content != rendered.content
    whole = get(instance_url, 'multipart/related; type="application/dicom"')
    assert whole.status_code == 200 and corrected in whole.content and first not in whole.content
    series_now = get(f"{series_url}/metadata", json_type, again.headers["etag"])
    assert series_now.status_code == 200 and series_now.headers["etag"] != again.headers["etag"]


def test_a_password_changed_on_one_node_is_refused_on_the_other(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    """Node 1 remembers a verified password for a while; a change on node 0 ends that."""
    nodes, _balancer = shared_cluster
    created = httpx.post(
        f"{nodes[0].base_url}/api/v1/users",
        json={"username": "roaming", "role": "referring_physician", "password": "first-Secret-1"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    url = f"{nodes[1].dicomweb}/studies"
    assert httpx.get(url, auth=("roaming", "first-Secret-1"), timeout=30).status_code == 200
    changed = httpx.patch(
        f"{nodes[0].base_url}/api/v1/users/roaming",
        json={"password": "second-Secret-2"},
        timeout=30,
    )
    assert changed.status_code == 200, changed.text
    assert httpx.get(url, auth=("roaming", "first-Secret-1"), timeout=30).status_code == 401
    assert httpx.get(url, auth=("roaming", "second-Secret-2"), timeout=30).status_code == 200


def test_every_change_is_delivered_once_by_two_nodes_delivery_workers(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    """Both nodes run a delivery worker over the one outbox: each webhook message goes out
    exactly once, whichever node stored the instance."""
    nodes, balancer = shared_cluster
    receiver = Receiver().start()
    try:
        hook = httpx.post(
            f"{nodes[0].base_url}/api/v1/webhooks",
            json={"url": receiver.url, "event_types": ["instance.stored"]},
            timeout=30,
        )
        assert hook.status_code == 201, hook.text
        study = StudySpec(patient_name="ONCE^ONLY")
        series = generate_uid()
        instances = [ct_image(study, series, n, rows=16, columns=16) for n in range(1, 31)]
        targets = [nodes[0].base_url, nodes[1].base_url, balancer.url]
        with ThreadPoolExecutor(6) as pool:
            codes = list(
                pool.map(lambda i: stow(targets[i % 3], [instances[i]]).status_code, range(30))
            )
        assert codes == [200] * 30

        def ours() -> list[dict]:
            bodies = [orjson.loads(m.body) for m in list(receiver.received)]
            return [
                b for b in bodies if b["data"]["study_instance_uid"] == study.study_instance_uid
            ]

        deadline = time.time() + 90
        while len(ours()) < 30 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # a second delivery of anything would arrive by now
        messages = ours()
        uids = [m["data"]["sop_instance_uid"] for m in messages]
        assert len(uids) == 30 and len(set(uids)) == 30
        ids = [m.headers["webhook-id"] for m in receiver.received]
        assert len(ids) == len(set(ids))
    finally:
        httpx.delete(f"{nodes[0].base_url}/api/v1/webhooks/{hook.json()['id']}", timeout=30)
        receiver.stop()
