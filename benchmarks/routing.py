"""Routing benchmark (issue 15): forwarding a stored study to a DIMSE peer, against sending
the same files straight to it with dcmtk's storescu.

- direct: `storescu` of N uncompressed CT slices (512x512, 16 bit) to a dcmtk `storescp`,
  instances/s;
- routed: the same N instances stored in Tessera first, then a routing rule to that storescp
  and `POST {api}/routes/{name}/send` for the study; instances/s from the request to the last
  file written by storescp (the delivery worker's claim, read, C-STORE and bookkeeping).

Target: routed >= 80% of direct.

    python benchmarks/routing.py [--instances 200] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from common import free_port, start_tessera  # noqa: E402
from dimse import generate, tool, wait_port  # noqa: E402

from tessera.client.stow import request_content_type  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402


def received(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir())


def wait_for(folder: Path, count: int, timeout: float = 600) -> float:
    deadline = time.perf_counter() + timeout
    while received(folder) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {received(folder)} of {count} instances arrived")
        time.sleep(0.01)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tessera-routing-bench-"))
    files_dir, inbox = workdir / "files", workdir / "inbox"
    inbox.mkdir()
    study_uid = generate(files_dir, args.instances)
    files = sorted(files_dir.glob("*.dcm"))
    port = free_port()
    storescp = subprocess.Popen(
        [tool("storescp"), "-aet", "DEST", "-od", str(inbox), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = None
    try:
        wait_port(port)
        started = time.perf_counter()
        subprocess.run(
            [tool("storescu"), "-aet", "BENCH", "-aec", "DEST", "127.0.0.1", str(port)]
            + [str(f) for f in files],
            check=True,
            capture_output=True,
        )
        direct = args.instances / (time.perf_counter() - started)
        print(f"direct storescu: {args.instances} instances at {direct:.1f}/s", flush=True)
        shutil.rmtree(inbox)
        inbox.mkdir()

        server = start_tessera(
            args.database,
            {"TESSERA_OUTBOUND_ALLOW_PRIVATE": "true", "TESSERA_DELIVERY_RETRY_BASE_SECONDS": "1"},
        )
        api = server.dicomweb.replace("/dicomweb", "/api/v1")
        with httpx.Client(timeout=300) as client:
            for first in range(0, len(files), 20):
                boundary = multipart_writer.new_boundary()
                body = multipart_writer.body(
                    boundary, [f.read_bytes() for f in files[first : first + 20]]
                )
                answer = client.post(
                    f"{server.dicomweb}/studies",
                    content=body,
                    headers={"Content-Type": request_content_type(boundary)},
                )
                answer.raise_for_status()
            rule = {
                "name": "bench",
                "trigger": "instance",
                "destination": {
                    "kind": "dimse",
                    "ae_title": "DEST",
                    "host": "127.0.0.1",
                    "port": port,
                    "calling_ae_title": "TESSERA",
                },
            }
            client.post(f"{api}/routes", json=rule).raise_for_status()
            started = time.perf_counter()
            queued = client.post(f"{api}/routes/bench/send", json={"study_instance_uid": study_uid})
            queued.raise_for_status()
            finished = wait_for(inbox, args.instances)
        routed = args.instances / (finished - started)
        print(
            f"routed ({server.name}): {args.instances} instances at {routed:.1f}/s "
            f"= {100 * routed / direct:.0f}% of direct (target >= 80%)"
        )
    finally:
        if server is not None:
            server.stop()
        storescp.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
