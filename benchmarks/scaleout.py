"""Scale-out figures: ingest and retrieval with 1, 2 and 4 nodes, files on local disk vs in an
S3-compatible object store (a real SeaweedFS on loopback); the latency S3 adds to one native
frame and to study metadata; index bytes per instance on PostgreSQL.

    TESSERA_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=. python benchmarks/scaleout.py --instances 400 --nodes 1,2,4

    # or on a PostgreSQL of its own (initdb + pg_ctl; max_connections 200, fsync off):
    PYTHONPATH=. python benchmarks/scaleout.py --private-postgres

Nodes run one HTTP worker each over one PostgreSQL database, behind HAProxy when there are
several. With local disk the nodes share one data folder (standing in for a shared file
system); with S3 each node has its own folder (spool only) and they share the bucket.
Prints figures; asserts nothing. On a two-core machine the nodes share the same cores, so
more nodes show the overhead of the design, not the throughput of more machines.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tessera.client.stow import request_content_type  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402
from tessera.synthetic import StudySpec, ct_image  # noqa: E402
from tests.conftest import (  # noqa: E402
    ServerProcess,
    create_pg_database,
    drop_pg_database,
    index_rows,
)
from tests.seaweedfs import SeaweedFS  # noqa: E402
from tests.test_scaleout import Balancer  # noqa: E402

BATCH = 10  # instances per STOW-RS request
CLIENTS = 8
RETRIED: list[int] = []  # 503 answers retried (e.g. the database out of connections)


def make_study(count: int, size: int) -> tuple[StudySpec, str, list[bytes]]:
    study = StudySpec(patient_name="BENCH^SCALE")
    series = generate_uid()
    return (
        study,
        series,
        [ct_image(study, series, n, rows=size, columns=size) for n in range(1, count + 1)],
    )


def stow(base: str, parts: list[bytes]) -> None:
    """One STOW-RS request; sent again after Retry-After on a 503, as a client should."""
    boundary = multipart_writer.new_boundary()
    for _ in range(10):
        response = httpx.post(
            f"{base}/dicomweb/studies",
            content=multipart_writer.body(boundary, parts),
            headers={"Content-Type": request_content_type(boundary)},
            timeout=300,
        )
        if response.status_code != 503:
            break
        RETRIED.append(1)
        time.sleep(min(float(response.headers.get("Retry-After", "1")), 2))
    assert response.status_code == 200, response.text[:300]


def cluster(store: str, nodes: int, workdir: Path, weed: SeaweedFS | None, url: str):  # type: ignore[no-untyped-def]
    env = {"TESSERA_WORKERS": "1", "TESSERA_LOG_LEVEL": "WARNING"}
    if store == "s3":
        assert weed
        env.update(weed.env())
    servers = []
    for i in range(nodes):
        data_dir = workdir / (f"node{i}" if store == "s3" else "shared")
        servers.append(
            ServerProcess(data_dir=data_dir, database_url=url, env_extra=env).start(timeout=180)
        )
    balancer = Balancer(workdir, servers) if nodes > 1 else None
    base = balancer.url if balancer else servers[0].base_url
    return servers, balancer, base


def timed_median(fn, n: int = 40) -> float:  # type: ignore[no-untyped-def]
    fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


class Databases:
    """Where each row's database is made: the shared server of the tests (TESSERA_TEST_PG_URL)
    or a private cluster (tests/private_postgres.py)."""

    def __init__(self, private: bool) -> None:
        self.cluster = None
        if private:
            from tests.conftest import free_port
            from tests.private_postgres import PrivatePostgres, why_unavailable

            reason = why_unavailable()
            if reason:
                raise SystemExit(f"--private-postgres: {reason}")
            self.cluster = PrivatePostgres(free_port())
            self.cluster.start()

    def create(self) -> str:
        if self.cluster is None:
            return create_pg_database()
        return self.cluster.create_database(f"bench_{generate_uid()[-12:].replace('.', '')}")

    def drop(self, url: str) -> None:
        if self.cluster is None:
            drop_pg_database(url)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()


DATABASES: Databases | None = None


def run(store: str, nodes: int, instances: list[bytes], study: StudySpec, series: str, weed):  # type: ignore[no-untyped-def]
    workdir = Path(tempfile.mkdtemp(prefix=f"scaleout-{store}-{nodes}-"))
    assert DATABASES is not None
    url = DATABASES.create()
    servers, balancer, base = cluster(store, nodes, workdir, weed, url)
    try:
        batches = [instances[i : i + BATCH] for i in range(0, len(instances), BATCH)]
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda b: stow(base, b), batches))
        ingest = len(instances) / (time.perf_counter() - started)
        uids = [r[0] for r in index_rows(url, "SELECT sop_instance_uid FROM instance ORDER BY 1")]
        root = f"{base}/dicomweb/studies/{study.study_instance_uid}/series/{series}/instances"
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            sizes = list(
                pool.map(
                    lambda uid: len(
                        httpx.get(
                            f"{root}/{uid}", headers={"Accept": "application/dicom"}, timeout=60
                        ).content
                    ),
                    uids,
                )
            )
        retrieve = len(uids) / (time.perf_counter() - started)
        started = time.perf_counter()
        whole = httpx.get(
            f"{base}/dicomweb/studies/{study.study_instance_uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"'},
            timeout=300,
        )
        study_mb_s = len(whole.content) / 1e6 / (time.perf_counter() - started)
        frame_ms = timed_median(
            lambda: httpx.get(
                f"{root}/{uids[0]}/frames/1",
                headers={"Accept": 'multipart/related; type="application/octet-stream"'},
            )
        )
        metadata_ms = timed_median(
            lambda: httpx.get(f"{base}/dicomweb/studies/{study.study_instance_uid}/metadata")
        )
        index_bytes = index_rows(
            url,
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')",
        )[0][0]
        return {
            "store": store,
            "nodes": nodes,
            "ingest_inst_s": ingest,
            "retrieve_inst_s": retrieve,
            "study_mb_s": study_mb_s,
            "frame_ms": frame_ms,
            "metadata_ms": metadata_ms,
            "index_bytes_per_instance": index_bytes / len(uids),
            "mean_instance_bytes": sum(sizes) / len(sizes),
        }
    finally:
        if balancer:
            balancer.stop()
        for server in servers:
            server.stop()
        DATABASES.drop(url)
        shutil.rmtree(workdir, ignore_errors=True)


def store_latency(weed: SeaweedFS, data: bytes, frame: int) -> tuple[float, float]:
    """Median ms of one frame-sized ranged read from each store, in-process (the latency S3
    adds to a native frame request, without HTTP and server noise)."""
    from tessera.storage.blobstore import FileSystemBlobStore
    from tessera.storage.s3 import S3BlobStore

    workdir = Path(tempfile.mkdtemp(prefix="scaleout-latency-"))
    disk = FileSystemBlobStore(workdir / "blobs")
    s3 = S3BlobStore(
        weed.BUCKET,
        workdir / "spool",
        prefix=weed.new_prefix(),
        endpoint=weed.endpoint,
        access_key_id=weed.env()["TESSERA_S3_ACCESS_KEY_ID"],
        secret_access_key=weed.env()["TESSERA_S3_SECRET_ACCESS_KEY"],
    )
    results = []
    for store in (disk, s3):
        source = workdir / "source"
        source.write_bytes(data)
        store.put_file("t1/aa/bench.dcm", source)
        offset = len(data) - frame
        results.append(
            timed_median(lambda s=store, o=offset: s.read_range("t1/aa/bench.dcm", o, frame), 200)
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--size", type=int, default=256, help="rows = columns of each CT slice")
    parser.add_argument("--nodes", default="1,2,4")
    parser.add_argument("--stores", default="disk,s3")
    parser.add_argument(
        "--private-postgres",
        action="store_true",
        help="run PostgreSQL of its own (not the shared TESSERA_TEST_PG_URL server)",
    )
    args = parser.parse_args()
    global DATABASES
    DATABASES = Databases(args.private_postgres)
    weed = SeaweedFS(Path(tempfile.mkdtemp(prefix="scaleout-weed-"))).start()
    try:
        _, _, sample = make_study(1, args.size)
        disk_ms, s3_ms = store_latency(weed, sample[0], args.size * args.size * 2)
        print(
            f"one native frame ({args.size * args.size * 2} B), ranged read in-process: "
            f"disk {disk_ms:.3f} ms, S3 {s3_ms:.3f} ms (S3 adds {s3_ms - disk_ms:.3f} ms); "
            "metadata: 0 object-store requests",
            flush=True,
        )
        print(
            "store nodes ingest(inst/s) retrieve(inst/s) study(MB/s) frame(ms) "
            "metadata(ms) index(B/inst) inst(B)"
        )
        for store in args.stores.split(","):
            for nodes in [int(n) for n in args.nodes.split(",")]:
                study, series, instances = make_study(args.instances, args.size)
                r = run(store, nodes, instances, study, series, weed)
                print(
                    f"{r['store']:5} {r['nodes']:5} {r['ingest_inst_s']:16.1f} "
                    f"{r['retrieve_inst_s']:16.1f} {r['study_mb_s']:11.1f} {r['frame_ms']:9.2f} "
                    f"{r['metadata_ms']:12.2f} {r['index_bytes_per_instance']:13.0f} "
                    f"{r['mean_instance_bytes']:7.0f}",
                    flush=True,
                )
        print(f"STOW-RS requests retried after 503: {len(RETRIED)}")
    finally:
        weed.stop()
        shutil.rmtree(weed.root, ignore_errors=True)
        DATABASES.close()


if __name__ == "__main__":
    main()
