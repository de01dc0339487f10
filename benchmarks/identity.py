"""Priors benchmark: a linked Patient ID search at archive scale.

Builds the index of benchmarks/qido_search.py (N studies of 10 instances, about N/2
patients, through the real ingest bookkeeping; PostgreSQL gets a COPY of the SQLite rows),
links one patient in 20 to the next one (`index.links.link`, the code `{api}/patients/..`
runs), then starts `tessera serve` and prints p50/p95 latency over HTTP of:

    /studies?PatientID=<unlinked>              an ordinary Patient ID search
    /studies?PatientID=<linked>                the priors query: both identities' studies
    {api}/patients/{id}/studies                a person's history

and the time of a merge (HL7 A40) of two patients with `--merge-studies` studies each
(2 series of 5 instances per study, added through the same ingest bookkeeping), through
`tessera.services.identity_changes.merge_patients` (one transaction: index rows, coercion,
history, audit event, change feed), and of its undo, `--merges` times.

    python benchmarks/identity.py [--studies 100000] [--databases sqlite,postgresql]
                                  [--repeat 50] [--merge-studies 50] [--merges 5]
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
from qido_search import (  # noqa: E402
    SOP_CLASS,
    _commit,
    _series_dataset,
    build_index,
    copy_index,
)

from tessera.archive import Archive  # noqa: E402
from tessera.config import Settings  # noqa: E402
from tessera.index.ingest import InstanceRecord  # noqa: E402
from tessera.index.links import link  # noqa: E402
from tessera.index.models import Patient  # noqa: E402
from tessera.index.sources import source_pk_by_name  # noqa: E402
from tessera.scope import full_scope  # noqa: E402
from tessera.services.identity_changes import merge_patients, undo_change  # noqa: E402
from tessera.storage.dicom_json import build_metadata  # noqa: E402

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


def _patient_records(tenant_id: int, source_pk: int, patient_id: str, studies: int):  # type: ignore[no-untyped-def]
    """The instances of one patient's `studies` studies (2 series of 5 instances each)."""
    for index in range(studies):
        study = {
            "uid": f"2.25.88{int.from_bytes(patient_id.encode()) % 10**12}{index:04d}",
            "patient_name": f"MERGE^{patient_id}",
            "patient_id": patient_id,
            "birth_date": "19800101",
            "sex": "F",
            "date": f"2020{1 + index % 12:02d}{1 + index % 28:02d}",
            "time": "120000",
            "accession": f"M{patient_id}{index}",
            "description": "MERGE",
        }
        for number, modality in enumerate(("CT", "MR"), start=1):
            series_uid = f"{study['uid']}.{number}"
            ds = _series_dataset(study, series_uid, number, modality)
            for instance_number in range(1, 6):
                sop_uid = f"{series_uid}.{instance_number}"
                ds.InstanceNumber = instance_number
                ds.SOPInstanceUID = sop_uid
                yield InstanceRecord(
                    tenant_id=tenant_id,
                    source_pk=source_pk,
                    dataset=ds,
                    study_instance_uid=study["uid"],
                    series_instance_uid=series_uid,
                    sop_instance_uid=sop_uid,
                    sop_class_uid=SOP_CLASS[modality],
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    blob_key=f"bench/{sop_uid}",
                    size_bytes=1024,
                    sha256="0" * 64,
                    dicom_json=build_metadata(ds, study["uid"], series_uid, sop_uid, None),
                    frames=None,
                    pixel_data_vr=None,
                )


def merge_figures(
    url: str, data_dir: Path, studies: int, merges: int, label: str
) -> tuple[list, list]:
    """Seconds of `merges` merges of two fresh patients with `studies` studies each, and of
    their undos (patients named after `label`, so a copied index holds none of them)."""
    archive = Archive.open(Settings(data_dir=data_dir, database_url=url))
    tenant_id = archive.default_tenant.id
    scope = full_scope(tenant_id, "benchmark")
    with archive.database.read() as conn:
        source_pk = source_pk_by_name(conn, tenant_id, "default")
    assert source_pk is not None
    merge_times, undo_times = [], []
    try:
        for run in range(merges):
            pks = []
            for side in ("A", "B"):
                patient_id = f"MERGE-{label}-{run}-{side}"
                records = list(_patient_records(tenant_id, source_pk, patient_id, studies))
                for start in range(0, len(records), 500):
                    _commit(archive, records[start : start + 500])
                with archive.database.read() as conn:
                    pks.append(
                        conn.execute(
                            select(Patient.id).where(Patient.patient_id == patient_id)
                        ).scalar_one()
                    )
            started = time.perf_counter()
            result = merge_patients(archive, scope, pks[0], pks[1], "benchmark")
            merge_times.append(time.perf_counter() - started)
            assert len(result.studies) == studies
            started = time.perf_counter()
            undo_change(archive, scope, result.change_id, "benchmark")
            undo_times.append(time.perf_counter() - started)
    finally:
        archive.close()
    return merge_times, undo_times


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
    parser.add_argument("--merge-studies", type=int, default=50)
    parser.add_argument("--merges", type=int, default=5)
    args = parser.parse_args()
    merges: dict[str, tuple[list, list]] = {}
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
            merges[database] = merge_figures(
                url, data_dir, args.merge_studies, args.merges, database
            )
            print(f"{database}: merges {[round(t, 3) for t in merges[database][0]]} s", flush=True)
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
    print(
        f"\nmerge of two patients with {args.merge_studies} studies each "
        f"({args.merge_studies * 10} instances each), {args.merges} runs, seconds:"
    )
    for database, (merge_times, undo_times) in merges.items():
        print(
            f"{database:12} merge p50 {percentile(merge_times, 50):.3f} max {max(merge_times):.3f}"
            f"   undo p50 {percentile(undo_times, 50):.3f} max {max(undo_times):.3f}"
        )


if __name__ == "__main__":
    main()
