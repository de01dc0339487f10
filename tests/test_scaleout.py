"""Several nodes: `tessera serve` processes with their own data folders (no shared disk) over
one PostgreSQL and one bucket (a real SeaweedFS), behind a real HAProxy."""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
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

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="TESSERA_TEST_PG_URL not set"),
    pytest.mark.skipif(
        not Path(HAPROXY).exists(), reason="apt-get install -y haproxy (.ci/run does)"
    ),
]


class Balancer:
    """HAProxy in front of the nodes: round robin, health checks on /healthz."""

    def __init__(self, workdir: Path, nodes: list[ServerProcess]) -> None:
        self.port = free_port()
        servers = "\n".join(
            f"    server n{i} 127.0.0.1:{node.port} check inter 300ms fall 2 rise 2"
            for i, node in enumerate(nodes)
        )
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
"""
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


@pytest.fixture
def cluster(seaweedfs, tmp_path):  # type: ignore[no-untyped-def]
    """Two nodes over one PostgreSQL database and one bucket prefix, and the balancer."""
    url = create_pg_database()
    store_env = seaweedfs.env(TESSERA_WORKERS="1")
    nodes = [
        ServerProcess(data_dir=tmp_path / f"node{i}", database_url=url, env_extra=store_env)
        for i in range(2)
    ]
    try:
        # The first node migrates the schema; the second starts on it.
        nodes[0].start(timeout=120)
        nodes[1].start(timeout=120)
        balancer = Balancer(tmp_path, nodes)
        try:
            yield nodes, balancer
        finally:
            balancer.stop()
    finally:
        for node in nodes:
            node.stop()
        drop_pg_database(url)


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


def test_concurrent_stow_of_one_study_through_different_nodes(cluster) -> None:  # type: ignore[no-untyped-def]
    nodes, balancer = cluster
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
    url = nodes[0].database_url
    assert index_rows(url, "SELECT count(*) FROM instance")[0][0] == 24
    [(series_count, instance_count)] = index_rows(
        url,
        "SELECT number_of_study_related_series, number_of_study_related_instances FROM study",
    )
    assert (series_count, instance_count) == (2, 24)
    per_series = index_rows(url, "SELECT number_of_series_related_instances FROM series ORDER BY 1")
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
    stored = index_rows(
        nodes[1].database_url,
        "SELECT count(*) FROM instance i JOIN study s ON s.id = i.study_pk "
        "WHERE s.study_instance_uid = :uid",
        uid=study.study_instance_uid,
    )[0][0]
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
