"""Priors benchmark: a linked Patient ID search at archive scale.

Builds the index of benchmarks/qido_search.py (N studies of 10 instances, about N/2
patients, through the real ingest bookkeeping; PostgreSQL gets a COPY of the SQLite rows),
links one patient in 20 to the next one (`index.links.link`, the code `{api}/patients/..`
runs), then starts `tessera serve` and prints p50/p95 latency over HTTP of:

    /studies?PatientID=<unlinked>              an ordinary Patient ID search
    /studies?PatientID=<linked>                the priors query: both identities' studies
    {api}/patients/{id}/studies                a person's history

    python benchmarks/identity.py [--studies 100000] [--databases sqlite,postgresql]
                                  [--repeat 50]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import drop_pg_database, fresh_pg_database, percentile, start_tessera  # noqa: E402
from qido_search import build_index, copy_index  # noqa: E402

from tessera.index.links import link  # noqa: E402
from tessera.index.models import Patient  # noqa: E402

LINK_EVERY = 20


def link_pairs(url: str) -> tuple[float, int, list[tuple[int, str, str]]]:
    """Link patient i to patient i+1 for every LINK_EVERY-th patient row. Returns the
    seconds, the number of links and (patient pk, its Patient ID, its partner's ID)."""
    engine = create_engine(url)
    started = time.perf_counter()
    linked = []
    with engine.begin() as conn:
        rows = conn.execute(select(Patient.id, Patient.patient_id).order_by(Patient.id)).all()
        tenant_id = conn.execute(select(Patient.tenant_id).limit(1)).scalar_one()
        for index in range(0, len(rows) - 1, LINK_EVERY):
            (a, a_id), (b, b_id) = rows[index], rows[index + 1]
            link(conn, tenant_id, a, b, "benchmark")
            linked.append((a, a_id, b_id))
    engine.dispose()
    return time.perf_counter() - started, len(linked), linked


def unlinked_id(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(
            select(Patient.patient_id).where(Patient.person_pk.is_(None)).offset(7).limit(1)
        ).scalar_one()
    engine.dispose()
    return found


def measure(base_url: str, paths: list[tuple[str, str]], repeat: int) -> list[tuple]:
    out = []
    with httpx.Client(timeout=120) as client:
        for label, path in paths:
            first = client.get(f"{base_url}{path}")
            assert first.status_code == 200, (path, first.status_code, first.text[:300])
            count = len(first.json())
            timings = []
            for _ in range(repeat):
                started = time.perf_counter()
                client.get(f"{base_url}{path}").read()
                timings.append((time.perf_counter() - started) * 1000)
            out.append((label, percentile(timings, 50), percentile(timings, 95), count))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    rng = random.Random(5)
    results = {}
    sqlite_url = f"sqlite:///{workdir / 'sqlite' / 'data' / 'index.sqlite3'}"
    try:
        for database in args.databases.split(","):
            data_dir = workdir / database / "data"
            data_dir.mkdir(parents=True, exist_ok=True)
            if database == "sqlite":
                url = sqlite_url
                seconds, total = build_index(url, data_dir, args.studies)
                print(f"sqlite: built {total:,} instances in {seconds:,.0f} s", flush=True)
            else:
                if "sqlite" not in args.databases:
                    sys.exit("postgresql copies the SQLite index: list sqlite first")
                url = fresh_pg_database()
                seconds, total = copy_index(sqlite_url, url, data_dir)
                print(f"postgresql: copied {total:,} rows in {seconds:,.0f} s", flush=True)
            seconds, links, linked = link_pairs(url)
            print(f"{database}: {links:,} links in {seconds:,.1f} s", flush=True)
            pk, patient_id, _partner = rng.choice(linked)
            paths = [
                ("PatientID=<unlinked>", f"/dicomweb/studies?PatientID={unlinked_id(url)}"),
                ("PatientID=<linked> (priors)", f"/dicomweb/studies?PatientID={patient_id}"),
                ("{api}/patients/{id}/studies", f"/api/v1/patients/{pk}/studies"),
            ]
            server = start_tessera(
                "sqlite",
                {
                    "TESSERA_DATA_DIR": str(data_dir),
                    "TESSERA_DATABASE_URL": url,
                    "TESSERA_LOG_LEVEL": "WARNING",
                },
            )
            try:
                base_url = server.dicomweb.rsplit("/dicomweb", 1)[0]
                results[database] = measure(base_url, paths, args.repeat)
            finally:
                server.stop()
            if database == "postgresql":
                drop_pg_database(url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\nindex: {args.studies:,} studies, ~{args.studies // 2:,} patients, 1 in {LINK_EVERY} linked"
    )
    print(f"{'query':32} " + " ".join(f"{db + ' p50/p95 ms (n)':>28}" for db in results))
    labels = [row[0] for row in next(iter(results.values()))]
    for index, label in enumerate(labels):
        cells = [
            f"{r[index][1]:>10.1f} / {r[index][2]:>6.1f} ({r[index][3]:>3})"
            for r in results.values()
        ]
        print(f"{label:32} " + " ".join(f"{c:>28}" for c in cells))
    print(
        f"(HTTP round trip, keep-alive client, {args.repeat} runs; os.cpu_count()={os.cpu_count()})"
    )


if __name__ == "__main__":
    main()
