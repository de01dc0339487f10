"""Change feed and webhook benchmark (issue 15's speed targets).

1. Outbox overhead: in-process ingest (parse, blob write, index transaction) of CT 512x512
   instances with the change-feed records on and off, alternating rounds.
2. Latency: a change visible to a long-polling feed reader after the STOW-RS response, and
   a webhook received after the STOW-RS response (p50 / p95), against a real server.

    python benchmarks/events.py [--database sqlite|postgresql] [--instances 200] [--samples 30]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from common import fresh_pg_database, percentile, start_tessera  # noqa: E402

from tessera.client.stow import request_content_type  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402
from tessera.synthetic import StudySpec, ct_image  # noqa: E402


def outbox_overhead(database: str, instances: int, rounds: int = 4) -> None:
    from tessera.archive import Archive, migrate_index
    from tessera.scope import full_scope
    from tessera.config import load_settings
    from tessera.index import ingest as index_ingest
    from tessera.services.ingest import ingest_file

    workdir = Path(tempfile.mkdtemp(prefix="tessera-events-bench-"))
    url = fresh_pg_database() if database == "postgresql" else ""
    settings = load_settings(data_dir=str(workdir / "data"), database_url=url or None)
    migrate_index(settings)
    archive = Archive.open(settings)
    scope = full_scope(archive.default_tenant.id)
    from tessera.services.ingest import resolve_upload_source

    source_pk = resolve_upload_source(archive, scope, None)
    original = index_ingest._record_changes
    timings: dict[bool, list[float]] = {True: [], False: []}
    spool = workdir / "spool"
    spool.mkdir()
    for round_number in range(rounds):
        for feed_on in (True, False) if round_number % 2 == 0 else (False, True):
            index_ingest._record_changes = original if feed_on else (lambda *args: None)
            spec = StudySpec()
            series = f"2.25.{time.time_ns()}"
            data = [ct_image(spec, series, n, 512, 512) for n in range(1, instances + 1)]
            started = time.perf_counter()
            for number, part in enumerate(data):
                path = spool / f"{number}.dcm"
                path.write_bytes(part)
                ingest_file(archive, scope, path, hashlib.sha256(part).hexdigest(), source_pk)
            timings[feed_on].append(time.perf_counter() - started)
    index_ingest._record_changes = original
    archive.close()
    shutil.rmtree(workdir, ignore_errors=True)
    on, off = sum(timings[True]), sum(timings[False])
    count = instances * rounds // 2
    print(
        f"[{database}] ingest {count} instances each way: feed on {count / on:.0f}/s, "
        f"off {count / off:.0f}/s, outbox overhead {100 * (on - off) / off:+.1f}%"
    )


def latencies(database: str, samples: int) -> None:
    from tests.webhook_receiver import Receiver

    server = start_tessera(
        database,
        {"TESSERA_OUTBOUND_ALLOW_PRIVATE": "true", "TESSERA_WORKERS": "2"},
    )
    api = server.dicomweb.replace("/dicomweb", "/api/v1")
    receiver = Receiver().start()
    try:
        httpx.post(
            f"{api}/webhooks",
            json={"url": receiver.url, "event_types": ["study.first_instance"]},
            timeout=30,
        ).raise_for_status()
        after = 0
        feed_ms, hook_ms = [], []
        for _ in range(samples):
            answered: dict = {}

            def poll(after: int = after, answered: dict = answered) -> None:
                page = httpx.get(
                    f"{api}/changes", params={"after": after, "wait": 30}, timeout=60
                ).json()
                answered["at"] = time.perf_counter()
                answered["next"] = page["next"]

            poller = threading.Thread(target=poll)
            poller.start()
            time.sleep(0.2)
            received_before = len(receiver.received)
            boundary = multipart_writer.new_boundary()
            httpx.post(
                f"{server.dicomweb}/studies",
                content=multipart_writer.body(
                    boundary, [ct_image(StudySpec(), f"2.25.{time.time_ns()}", 1, 64, 64)]
                ),
                headers={"Content-Type": request_content_type(boundary)},
                timeout=60,
            ).raise_for_status()
            stored_at = time.perf_counter()
            stored_wall = time.time()
            poller.join(60)
            feed_ms.append(max(0.0, answered["at"] - stored_at) * 1000)
            receiver.wait_for(received_before + 1)
            hook_ms.append(max(0.0, receiver.received[-1].at - stored_wall) * 1000)
            after = answered["next"]
            while True:  # read the rest (instance.stored) so the next poll waits again
                page = httpx.get(f"{api}/changes", params={"after": after}, timeout=30).json()
                if not page["changes"]:
                    break
                after = page["next"]
        print(
            f"[{database}] change visible to a long-poll after the STOW-RS response: "
            f"p50 {percentile(feed_ms, 50):.0f} ms, p95 {percentile(feed_ms, 95):.0f} ms; "
            f"webhook received: p50 {percentile(hook_ms, 50):.0f} ms, "
            f"p95 {percentile(hook_ms, 95):.0f} ms ({samples} samples)"
        )
    finally:
        receiver.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    if args.instances:
        outbox_overhead(args.database, args.instances)
    latencies(args.database, args.samples)


if __name__ == "__main__":
    main()
