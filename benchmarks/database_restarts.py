"""PostgreSQL restarted again and again under load: what the clients are answered.

Starts a private PostgreSQL cluster (tests/private_postgres.py: it may be stopped, unlike the
shared server), `tessera serve` over it (two HTTP workers, a local folder for the files), and
clients that store one new instance after another over STOW-RS and read QIDO-RS, series,
study metadata and /healthz in loops. The database is stopped (alternately `-m immediate`, as
a crash, and `-m fast`) and started again, `--restarts` times. Prints the answers by status,
the connection errors, and the server's logged tracebacks of requests answered 500.

Every answer should be 200 or 503 (with Retry-After); a 500 is a defect.

    python benchmarks/database_restarts.py [--restarts 10] [--writers 4] [--readers 6] [--wide]
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
import threading
import time
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import free_port, start_tessera  # noqa: E402

from tessera.client.stow import request_content_type  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402
from tessera.synthetic import StudySpec, ct_image  # noqa: E402
from tests.private_postgres import PrivatePostgres, why_unavailable  # noqa: E402
from tests.server_log import unhandled_errors  # noqa: E402

# GET lists of the admin API the --wide readers ask for.
ADMIN_LISTS = (
    "users", "sources", "roles", "api-keys", "peers", "orders", "audit", "changes",
    "routes", "webhooks", "upload-sessions", "me",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=6)
    parser.add_argument(
        "--wide",
        action="store_true",
        help="readers also retrieve (instances, frames, rendered, thumbnail, WADO-URI) and "
        "list the admin API's resources",
    )
    args = parser.parse_args()
    reason = why_unavailable()
    if reason:
        sys.exit(f"no private PostgreSQL: {reason}")
    cluster = PrivatePostgres(free_port())
    cluster.start()
    server = None
    try:
        url = cluster.create_database("restarts")
        server = start_tessera(
            extra_env={"TESSERA_DATABASE_URL": url, "TESSERA_WORKERS": "2"},
            startup_timeout=120,
        )
        run(server.dicomweb, cluster, args)
        tracebacks = unhandled_errors(server.log.read_text(errors="replace") if server.log else "")
        print(f"requests answered 500 in the server log: {len(tracebacks)}")
        for text in tracebacks[:5]:
            print(text)
    finally:
        if server is not None:
            server.stop()
        cluster.destroy()


def run(dicomweb: str, cluster: PrivatePostgres, args: argparse.Namespace) -> None:
    study = StudySpec(patient_name="RESTART^BENCH")
    series = generate_uid()
    base = dicomweb.removesuffix("/dicomweb")
    statuses: collections.Counter = collections.Counter()
    errors: list[str] = []
    lock = threading.Lock()
    numbers = iter(range(1, 10**9))
    stop = threading.Event()
    odd: collections.Counter = collections.Counter()  # (path, status) neither 200 nor 503

    # The study exists before the readers start (no 404 for its series and metadata).
    first = ct_image(study, series, 0, rows=32, columns=32)
    first_uid = pydicom.dcmread(io.BytesIO(first)).SOPInstanceUID
    first_status = stow(dicomweb, first)
    assert first_status == 200, f"the first instance was answered {first_status}"

    def answered(status: int, path: str = "STOW-RS") -> None:
        with lock:
            statuses[status] += 1
            if status not in (200, 503):
                odd[(path.split("?")[0].replace(base, ""), status)] += 1

    def writer() -> None:
        while not stop.is_set():
            with lock:
                n = next(numbers)
            try:
                answered(stow(dicomweb, ct_image(study, series, n, rows=32, columns=32)))
            except httpx.HTTPError as exc:
                with lock:
                    errors.append(repr(exc))

    def reader() -> None:
        study_url = f"{dicomweb}/studies/{study.study_instance_uid}"
        instance_url = f"{study_url}/series/{series}/instances/{first_uid}"
        paths = (
            f"{dicomweb}/studies?PatientName=RESTART*",
            f"{study_url}/series",
            f"{study_url}/metadata",
            f"{base}/healthz",
            *(
                (
                    study_url,
                    f"{instance_url}/frames/1",
                    f"{instance_url}/rendered",
                    f"{study_url}/thumbnail",
                    f"{dicomweb}/wado?requestType=WADO&studyUID={study.study_instance_uid}"
                    f"&seriesUID={series}&objectUID={first_uid}",
                    *(f"{base}/api/v1/{name}" for name in ADMIN_LISTS),
                )
                if args.wide
                else ()
            ),
        )
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                for path in paths:
                    try:
                        answered(client.get(path).status_code, path)
                    except httpx.HTTPError as exc:
                        with lock:
                            errors.append(repr(exc))

    threads = [threading.Thread(target=writer) for _ in range(args.writers)]
    threads += [threading.Thread(target=reader) for _ in range(args.readers)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        for cycle in range(args.restarts):
            time.sleep(1.5)
            cluster.stop("immediate" if cycle % 2 == 0 else "fast")
            time.sleep(1 + (cycle % 3) * 0.5)
            cluster.start()
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    seconds = time.monotonic() - started
    print(
        f"{args.restarts} restarts in {seconds:.0f} s, {args.writers} writers, "
        f"{args.readers} readers"
    )
    print(f"answers by status: {dict(sorted(statuses.items()))}")
    for (path, status), count in sorted(odd.items()):
        print(f"  {status} x{count}: {path}")
    print(f"connection errors: {len(errors)}")
    for error in errors[:5]:
        print(f"  {error}")


def stow(dicomweb: str, instance: bytes) -> int:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{dicomweb}/studies",
        content=multipart_writer.body(boundary, [instance]),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=30,
    )
    return response.status_code


if __name__ == "__main__":
    main()
