"""What authentication and the audit trail cost on the frame hot path.

Stores one small CT instance, then fetches its frame repeatedly (as OHIF does, one frame per
request, several in flight) anonymously, with an API key, with HTTP Basic and with a
source-locked user's key, and prints latency percentiles and throughput for each.

    python benchmarks/auth_overhead.py [--requests 2000] [--concurrency 8] [--database sqlite]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    drop_pg_database,
    fresh_pg_database,
    median,
    percentile,
    start_tessera,
)
from tessera.client.stow import request_content_type  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402
from tessera.synthetic import StudySpec, ct_image  # noqa: E402

PASSWORD = "benchmark-password"
ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def admin(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "admin", *args, "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def run(url: str, headers: dict[str, str], requests: int, concurrency: int) -> tuple:
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency))
    latencies: list[float] = []

    def one(_: int) -> None:
        start = time.perf_counter()
        response = client.get(url, headers={**headers, "Accept": ACCEPT})
        response.read()
        assert response.status_code == 200, response.text
        latencies.append(time.perf_counter() - start)

    for _ in range(50):  # warm up (and fill the Basic verification cache)
        one(0)
    latencies.clear()
    begin = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - begin
    client.close()
    return requests / elapsed, median(latencies) * 1000, percentile(latencies, 95) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="tessera-auth-bench-")) / "data"
    extra = {"TESSERA_DATA_DIR": str(data_dir)}
    if args.database == "postgresql":
        extra["TESSERA_DATABASE_URL"] = fresh_pg_database()
    server = start_tessera("sqlite", extra)
    try:
        env = dict(os.environ, **extra)
        key = admin(env, "bootstrap", "--password", PASSWORD)["api_key"]
        admin(env, "user-create", "locked", "--role", "referring_physician", "--sources", "default")
        locked_key = admin(env, "key-create", "locked")["api_key"]

        study = StudySpec()
        series = generate_uid()
        data = ct_image(study, series, 1, 256, 256)
        boundary = multipart_writer.new_boundary()
        stored = httpx.post(
            f"{server.dicomweb}/studies",
            content=multipart_writer.body(boundary, [data]),
            headers={
                "Content-Type": request_content_type(boundary),
                "Authorization": f"Bearer {key}",
            },
        ).json()
        sop = stored["00081199"]["Value"][0]["00081155"]["Value"][0]
        url = f"{server.dicomweb}/studies/{study.study_instance_uid}/series/{series}/instances/{sop}/frames/1"
        basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        cases = {
            "anonymous (loopback)": {},
            "API key": {"Authorization": f"Bearer {key}"},
            "HTTP Basic": {"Authorization": f"Basic {basic}"},
            "source-locked API key": {"Authorization": f"Bearer {locked_key}"},
        }
        print(f"frame GET, {args.requests} requests, {args.concurrency} in flight, {args.database}")
        print(f"{'credentials':24s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for name, headers in cases.items():
            rate, p50, p95 = run(url, headers, args.requests, args.concurrency)
            print(f"{name:24s} {rate:8.0f} {p50:8.2f} {p95:8.2f}")
    finally:
        server.stop()
        if args.database == "postgresql":
            drop_pg_database(extra["TESSERA_DATABASE_URL"])


if __name__ == "__main__":
    main()
