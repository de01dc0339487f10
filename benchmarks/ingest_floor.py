"""What storing a 512 KB instance costs on this machine before any DICOM work: the floor
under every server's STOW-RS (docs/stow.md, "What limits it now").

Prints CPU (user + system) per 512 KB instance for:
- receiving it over HTTP: a bare uvicorn app (httptools, uvloop, two workers) that drains
  multipart STOW-RS bodies of `stow_ingest.generate` and drops them, 1 and 4 clients;
- SHA-256 of it;
- writing it to a new file, kept (as a store keeps its files), by rounds of 1,000: the page
  cache gets dearer to write as it fills on this virtual machine;
- creating the file (its inode).

    python benchmarks/ingest_floor.py [--files 3000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, process_tree_cpu, wait_http  # noqa: E402
from stow_ingest import generate, run_ingest  # noqa: E402

SIZE = 512 * 1024

DRAIN_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


async def drain(request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return Response(str(size))


async def health(request):
    return Response("ok")


app = Starlette(routes=[Route("/dicomweb/studies", drain, methods=["POST"]), Route("/healthz", health)])
"""


def http_receive(instances: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="drain-"))
    (workdir / "drain_app.py").write_text(DRAIN_APP)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(workdir), "drain_app:app"]
        + ["--port", str(port), "--workers", "2", "--log-level", "warning"],
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        data = generate(instances)
        count = sum(len(batch) for batch in data)
        for clients in (1, 4):
            before = process_tree_cpu(server.pid)
            rate, _, failed = run_ingest(f"http://127.0.0.1:{port}/dicomweb", data, clients)
            cpu = 1000 * (process_tree_cpu(server.pid) - before) / count
            print(
                f"HTTP receive, drained, {clients} client(s): {cpu:.3f} ms per instance"
                f" ({rate:.0f} instances/s, {failed} failed)"
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def sha256_cost() -> None:
    data = os.urandom(SIZE)
    started = time.process_time()
    for _ in range(500):
        hashlib.sha256(data).digest()
    print(f"SHA-256: {1000 * (time.process_time() - started) / 500:.3f} ms per 512 KB")


def file_writes(files: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="floor-", dir=os.environ.get("TMPDIR")))
    data = os.urandom(SIZE)
    try:
        for start in range(0, files, 1000):
            create = write = 0.0
            for index in range(start, min(start + 1000, files)):
                began = time.process_time()
                fd = os.open(folder / f"{index}.dcm", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
                created = time.process_time()
                os.write(fd, data)
                os.close(fd)
                create += created - began
                write += time.process_time() - created
            done = min(start + 1000, files) - start
            print(
                f"files {start + 1}-{start + done} kept: create {1000 * create / done:.3f} ms,"
                f" write {1000 * write / done:.3f} ms per 512 KB file"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--instances", type=int, default=800, help="for the HTTP receive")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    sha256_cost()
    file_writes(args.files)
    http_receive(args.instances)


if __name__ == "__main__":
    main()
