"""STOW-RS ingest benchmark.

Prints instances/s and MB/s with 1 and 4 concurrent clients, for Tessera on SQLite and on
PostgreSQL (and Orthanc with its DICOMweb plugin when installed: `apt-get install orthanc
orthanc-dicomweb`), on the same generated study set (CT 512x512 uncompressed plus some RLE
compressed MR); then the server's peak RSS growth while receiving one large request.

    python benchmarks/stow_ingest.py [--instances 400] [--per-request 10] [--big-mb 1024] [--no-orthanc]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RssSampler,
    orthanc_available,
    process_tree_cpu,
    start_orthanc,
    start_tessera,
)

from tessera.client.stow import request_content_type  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402
from tessera.synthetic import StudySpec, ct_image, mr_rle_image  # noqa: E402

BATCH = 10  # instances per request, as a modality router or `tessera upload` would send


def generate(count: int, per_request: int = BATCH) -> list[list[bytes]]:
    """count instances in studies of 50 (or of `per_request`, when larger: one request per
    whole study), per_request instances per request: 90% CT 512x512, 10% RLE MR 256x256."""
    batches: list[list[bytes]] = []
    current: list[bytes] = []
    study_size = max(50, per_request)
    for index in range(count):
        if index % study_size == 0:
            number = index // study_size
            study = StudySpec(patient_name=f"BENCH^{number}", patient_id=f"B{number}")
            ct_series, mr_series = generate_uid(), generate_uid()
        if index % 10 == 9:
            current.append(mr_rle_image(study, mr_series, index))
        else:
            current.append(ct_image(study, ct_series, index, seed=index))
        if len(current) == per_request:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


def run_ingest(dicomweb: str, batches: list[list[bytes]], clients: int) -> tuple[float, float, int]:
    bodies = []
    for batch in batches:
        boundary = multipart_writer.new_boundary()
        bodies.append(
            (multipart_writer.body(boundary, batch), request_content_type(boundary), len(batch))
        )
    failures = 0
    with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=clients)) as client:

        def post(item: tuple[bytes, str, int]) -> int:
            body, ctype, _ = item
            response = client.post(
                f"{dicomweb}/studies", content=body, headers={"Content-Type": ctype}
            )
            return 0 if response.status_code == 200 else 1

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            failures = sum(pool.map(post, bodies))
        elapsed = time.perf_counter() - started
    count = sum(n for _, _, n in bodies)
    megabytes = sum(len(b) for b, _, _ in bodies) / 1e6
    return count / elapsed, megabytes / elapsed, failures


def big_request_rss(pid: int, dicomweb: str, megabytes: int) -> tuple[float, float, float]:
    """Stream one request of about `megabytes` MB of distinct CT instances; returns
    (baseline MB, peak growth MB, seconds)."""
    study = StudySpec(patient_name="BIG^REQUEST")
    series = generate_uid()
    template = ct_image(study, series, 1)
    per_part = len(template)
    parts = max(1, megabytes * 1_000_000 // per_part)
    boundary = multipart_writer.new_boundary()

    def body():  # type: ignore[no-untyped-def]
        for n in range(parts):
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            yield ct_image(study, series, n + 1, seed=n % 7)
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        response = httpx.post(
            f"{dicomweb}/studies",
            content=body(),
            headers={"Content-Type": request_content_type(boundary)},
            timeout=1800,
        )
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        print(f"  big request answered {response.status_code}: {response.text[:200]}")
    return sampler.baseline / 1e6, (sampler.peak - sampler.baseline) / 1e6, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the single large request")
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--per-request",
        type=int,
        default=BATCH,
        help="instances per request (100: one request per whole study of ~50 MB)",
    )
    args = parser.parse_args()

    print(f"generating {args.instances} instances ...", flush=True)
    # Distinct UIDs per run.
    data = {clients: generate(args.instances, args.per_request) for clients in (1, 4)}
    total_mb = sum(len(p) for b in data[1] for p in b) / 1e6
    print(
        f"{args.instances} instances, {total_mb:.0f} MB per run,"
        f" {args.per_request} instances per request"
    )
    print(f"machine: {os.cpu_count()} cores\n")
    print(
        f"{'server':22s} {'clients':>7s} {'inst/s':>9s} {'MB/s':>8s} {'failed':>7s}"
        f" {'server CPU':>10s} {'client CPU':>10s}  (ms per instance, user + system)"
    )

    targets = [("tessera", db) for db in args.databases.split(",")]
    if not args.no_orthanc and orthanc_available():
        targets.append(("orthanc", ""))
    results: dict[str, dict[int, float]] = {}
    for kind, database in targets:
        server = start_tessera(database) if kind == "tessera" else start_orthanc()
        try:
            for clients in (1, 4):
                server_cpu, client_cpu = process_tree_cpu(server.pid), time.process_time()
                rate, mbps, failed = run_ingest(server.dicomweb, data[clients], clients)
                count = sum(len(batch) for batch in data[clients])
                server_ms = 1000 * (process_tree_cpu(server.pid) - server_cpu) / count
                client_ms = 1000 * (time.process_time() - client_cpu) / count
                results.setdefault(server.name, {})[clients] = rate
                print(
                    f"{server.name:22s} {clients:7d} {rate:9.1f} {mbps:8.1f} {failed:7d}"
                    f" {server_ms:10.2f} {client_ms:10.2f}",
                    flush=True,
                )
        finally:
            server.stop()
    if "orthanc" in results:
        for name, by_clients in results.items():
            if name != "orthanc":
                ratios = ", ".join(
                    f"{c} client(s): x{by_clients[c] / results['orthanc'][c]:.2f}" for c in (1, 4)
                )
                print(f"{name} vs orthanc: {ratios}")

    if args.big_mb:
        server = start_tessera("sqlite")
        try:
            baseline, growth, seconds = big_request_rss(server.pid, server.dicomweb, args.big_mb)
            print(
                f"\nsingle {args.big_mb} MB request into tessera/sqlite: RSS baseline {baseline:.0f} MB, "
                f"peak growth {growth:.0f} MB, {args.big_mb / seconds:.0f} MB/s"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
