"""QIDO-RS search benchmark at archive scale.

Builds an index of N studies (10 instances each: two series of 5) plus one study with a
1,000-instance series, through the real ingest bookkeeping (`index.ingest.record_instance`,
the same statements STOW-RS and C-STORE run; header-only datasets, so no files are
written), on SQLite and on PostgreSQL; then starts `tessera serve` on each index and prints
p50/p95 latency over HTTP for the searches of issue 3:

    /studies?PatientName=SMI*&limit=100
    /studies?StudyDate=20160101-20181231&limit=100
    /studies?PatientID=<one>
    /studies/{s}/series
    /studies/{s}/series/{se}/instances         (a 1,000-instance series)
    /studies?limit=101&offset=0&fuzzymatching=false&includefield=...   (OHIF's study list)
    /studies?limit=26&offset=...&orderby=-StudyDate&includefield=...  (the portal's worklist)

    python benchmarks/qido_search.py [--studies 100000] [--databases sqlite,postgresql]
                                     [--repeat 50] [--keep DIR] [--reuse DIR]
                                     [--locked | --user]

--locked runs the searches as a user locked to the source every instance carries (the
source-locked query path: same data, same answers) instead of the anonymous full scope;
--user as a user with an API key who sees every source (the same authentication as --locked,
the full-scope query path), so the two compare the query paths alone.

The full size (100,000 studies / 1,000,000 instances) takes a while on a small machine;
--studies sets the size. --keep leaves the built indexes in DIR and --reuse runs the
searches against them again without rebuilding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (  # noqa: E402
    Server,
    fresh_pg_database,
    percentile,
    start_tessera,
)

from tessera.archive import Archive, migrate_index  # noqa: E402
from tessera.config import Settings  # noqa: E402
from tessera.index.ingest import InstanceRecord, RecordOutcome, record_instance  # noqa: E402
from tessera.index.sources import source_pk_by_name  # noqa: E402
from tessera.storage.dicom_json import build_metadata  # noqa: E402

FAMILY = [
    "SMITH", "SMITHSON", "SMILEY", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER",
    "DAVIS", "RODRIGUEZ", "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON",
    "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE",
    "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN",
    "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON",
    "BAKER", "HALL", "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS", "MULLER", "SCHMIDT",
    "SCHNEIDER", "FISCHER", "WEBER", "MEYER", "WAGNER", "BECKER", "SCHULZ", "HOFFMANN", "DUBOIS",
    "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND",
    "ROSSI", "RUSSO", "FERRARI", "ESPOSITO", "BIANCHI", "ROMANO", "COLOMBO", "RICCI", "MARINO",
    "SATO", "SUZUKI", "TAKAHASHI", "TANAKA", "WATANABE", "ITO", "YAMAMOTO", "NAKAMURA", "KIM",
    "PARK", "CHOI", "WANG", "LI", "ZHANG", "LIU", "CHEN", "YANG", "HUANG", "ZHAO",
]  # fmt: skip
GIVEN = ["ANNA", "JOHN", "MARIA", "PETER", "LUCIA", "JAMES", "SOFIA", "DAVID", "EMMA", "NOAH"]
MODALITIES = ["CT", "MR", "CR", "US", "DX", "PT", "MG", "NM"]
SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "NM": "1.2.840.10008.5.1.4.1.1.20",
}
SERIES_PER_STUDY = 2
INSTANCES_PER_SERIES = 5
BIG_SERIES = 1000
BATCH = 500  # instances per transaction while building


def _series_dataset(study: dict, series_uid: str, number: int, modality: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.StudyInstanceUID = study["uid"]
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = study["patient_name"]
    ds.PatientID = study["patient_id"]
    ds.PatientBirthDate = study["birth_date"]
    ds.PatientSex = study["sex"]
    ds.StudyDate = study["date"]
    ds.StudyTime = study["time"]
    ds.AccessionNumber = study["accession"]
    ds.StudyDescription = study["description"]
    ds.ReferringPhysicianName = "REF^DOCTOR"
    ds.StudyID = "1"
    ds.Modality = modality
    ds.SeriesNumber = number
    ds.SeriesDescription = f"{modality} series {number}"
    ds.SeriesDate = study["date"]
    ds.Rows = 512
    ds.Columns = 512
    ds.BitsAllocated = 16
    ds.ContentDate = study["date"]
    ds.InstanceNumber = 1
    ds.SOPInstanceUID = "1.2"
    return ds


def _studies(count: int, seed: int = 7):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    start = date(2000, 1, 1)
    patients = max(1, count // 2)
    for index in range(count):
        patient = rng.randrange(patients)
        family = FAMILY[patient % len(FAMILY)]
        given = GIVEN[(patient // len(FAMILY)) % len(GIVEN)]
        day = start + timedelta(days=rng.randrange(26 * 365))
        yield {
            "uid": f"2.25.77{index}",
            "patient_name": f"{family}^{given}^{patient}",
            "patient_id": f"P{patient:07d}",
            "birth_date": f"19{rng.randrange(30, 99)}0101",
            "sex": rng.choice("MF"),
            "date": day.strftime("%Y%m%d"),
            "time": f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00",
            "accession": f"A{index:08d}",
            "description": rng.choice(["CHEST", "HEAD", "ABDOMEN", "KNEE", "SPINE"]),
            "modalities": rng.sample(MODALITIES, SERIES_PER_STUDY),
        }


def build_index(database_url: str, data_dir: Path, studies: int) -> tuple[float, int]:
    """Fill the index; returns (seconds, instances)."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    migrate_index(settings)
    archive = Archive.open(settings)
    tenant_id = archive.default_tenant.id
    with archive.database.read() as conn:
        source_pk = source_pk_by_name(conn, tenant_id, "default")
    assert source_pk is not None

    def records():  # type: ignore[no-untyped-def]
        # The big series first: an interrupted build still leaves a usable index.
        big = {
            "uid": "2.25.999",
            "patient_name": "BIG^SERIES",
            "patient_id": "BIG-1",
            "birth_date": "19700101",
            "sex": "O",
            "date": "20240101",
            "time": "120000",
            "accession": "BIG",
            "description": "BIG SERIES",
            "modalities": ["CT"],
        }
        yield from _instances(big, "2.25.999.1", 1, "CT", BIG_SERIES)
        for study in _studies(studies):
            for number, modality in enumerate(study["modalities"], start=1):
                series_uid = f"{study['uid']}.{number}"
                yield from _instances(study, series_uid, number, modality, INSTANCES_PER_SERIES)

    def _instances(study, series_uid, number, modality, count):  # type: ignore[no-untyped-def]
        ds = _series_dataset(study, series_uid, number, modality)
        # The stored metadata (about 1 KB) is built once per series and the instance's UID
        # and number substituted: building it is ingest's cost, not the bookkeeping's.
        ds.SOPInstanceUID = "9.9.9.9"
        ds.InstanceNumber = 999999
        template = build_metadata(ds, study["uid"], series_uid, "9.9.9.9", None)
        for instance_number in range(1, count + 1):
            sop_uid = f"{series_uid}.{instance_number}"
            ds.InstanceNumber = instance_number
            ds.SOPInstanceUID = sop_uid
            metadata = template.replace(b"9.9.9.9", sop_uid.encode()).replace(
                b"999999", str(instance_number).encode()
            )
            yield InstanceRecord(
                tenant_id=tenant_id,
                source_pk=source_pk,
                dataset=ds,
                study_instance_uid=study["uid"],
                series_instance_uid=series_uid,
                sop_instance_uid=sop_uid,
                sop_class_uid=SOP_CLASS[modality],
                transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
                blob_key=f"bench/{sop_uid}",
                size_bytes=1024,
                sha256=f"{hash(sop_uid) & (2**64 - 1):064x}",
                dicom_json=metadata,
                frames=None,
                pixel_data_vr=None,
            )

    started = time.perf_counter()
    total = 0
    batch: list[InstanceRecord] = []
    expected = studies * SERIES_PER_STUDY * INSTANCES_PER_SERIES + BIG_SERIES
    for record in records():
        batch.append(record)
        if len(batch) == BATCH:
            total += _commit(archive, batch)
            batch = []
            if total % 50_000 == 0:
                rate = total / (time.perf_counter() - started)
                print(f"  {total:,}/{expected:,} instances ({rate:,.0f}/s)", flush=True)
    total += _commit(archive, batch)
    with archive.database.write() as conn:
        conn.execute(text("ANALYZE"))
    archive.close()
    return time.perf_counter() - started, total


COPIED_TABLES = (
    "patient",
    "study",
    "series",
    "instance",
    "instance_metadata",
    "study_source",
    "series_source",
)


def copy_index(sqlite_url: str, pg_url: str, data_dir: Path) -> tuple[float, int]:
    """Fill a migrated PostgreSQL index with the rows the bookkeeping wrote into SQLite
    (COPY, in key order), then ANALYZE. The same rows, so the same searches can be timed
    on both databases without running a million bookkeeping transactions twice."""
    from sqlalchemy import select

    from tessera.index.models import Base

    started = time.perf_counter()
    settings = Settings(data_dir=data_dir, database_url=pg_url)
    migrate_index(settings)
    archive = Archive.open(settings)
    archive.close()
    source = create_engine(sqlite_url)
    target = create_engine(pg_url)
    copied = 0
    with source.connect() as reader, target.begin() as writer:
        raw = writer.connection.driver_connection
        for name in COPIED_TABLES:
            if name not in Base.metadata.tables:
                continue  # a table of a later schema
            table = Base.metadata.tables[name]
            columns = [c.name for c in table.columns]
            statement = select(*table.columns).order_by(table.primary_key.columns.values()[0])
            with raw.cursor().copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in reader.execution_options(yield_per=5000).execute(statement):
                    copy.write_row(tuple(row))
                    copied += 1
            if "id" in table.c:
                writer.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT max(id) FROM {name}))"
                )
            print(f"  copied {name}", flush=True)
    with target.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    source.dispose()
    target.dispose()
    return time.perf_counter() - started, copied


def _commit(archive: Archive, batch: list[InstanceRecord]) -> int:
    if not batch:
        return 0
    with archive.database.write() as conn:
        for record in batch:
            outcome = record_instance(conn, record).outcome
            assert outcome in (RecordOutcome.CREATED, RecordOutcome.IDENTICAL), outcome
    return len(batch)


WORKLIST = "&includefield=00081030%2C00080061%2C00201206%2C00201208%2C00100030"


def queries(studies: int) -> list[tuple[str, str]]:
    rng = random.Random(3)
    some = list(_studies(min(studies, 2000)))
    study = rng.choice(some)
    return [
        ("PatientName=SMI*&limit=100", "/studies?PatientName=SMI*&limit=100"),
        ("StudyDate=2016-2018&limit=100", "/studies?StudyDate=20160101-20181231&limit=100"),
        ("PatientID=<one>", f"/studies?PatientID={study['patient_id']}"),
        ("/studies/{s}/series", f"/studies/{study['uid']}/series"),
        ("1,000-instance series", "/studies/2.25.999/series/2.25.999.1/instances"),
        (
            "OHIF study list",
            "/studies?limit=101&offset=0&fuzzymatching=false"
            "&includefield=00081030%2C00080060%2C00080090%2C00100030",
        ),
        ("OHIF PatientName=*SMI*", "/studies?limit=101&offset=0&PatientName=*SMI*"),
        # The portal's worklist (tessera/portal/static/worklist.js): 25 rows, sorted on the
        # server, first page and a deep page.
        ("worklist newest first", f"/studies?limit=26&offset=0&orderby=-StudyDate{WORKLIST}"),
        ("worklist page 41", f"/studies?limit=26&offset=1000&orderby=-StudyDate{WORKLIST}"),
        ("worklist by name", f"/studies?limit=26&offset=0&orderby=PatientName{WORKLIST}"),
        (
            "worklist SMI* by date",
            f"/studies?limit=26&offset=0&PatientName=SMI*&orderby=-StudyDate{WORKLIST}",
        ),
    ]


def user_key(data_dir: Path, url: str, locked: bool) -> str:
    """An API key of a reading physician: `bench_locked`, who sees the source `default`, or
    `bench_user`, who sees every source."""
    env = dict(os.environ, TESSERA_DATA_DIR=str(data_dir), TESSERA_DATABASE_URL=url)

    def admin(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "tessera.cli", "admin", *args, "--json"]
        return subprocess.run(command, env=env, capture_output=True, text=True)

    name = "bench_locked" if locked else "bench_user"
    sources = ["--sources", "default"] if locked else []
    admin("user-create", name, "--role", "reading_physician", *sources)
    created = admin("key-create", name, "--name", "benchmark")
    assert created.returncode == 0, created.stderr
    return json.loads(created.stdout)["api_key"]


def measure(
    server: Server, studies: int, repeat: int, headers: dict[str, str] | None = None
) -> list[tuple[str, float, float, int]]:
    out = []
    with httpx.Client(timeout=120, headers=headers) as client:
        for label, path in queries(studies):
            url = f"{server.dicomweb}{path}"
            first = client.get(url)
            assert first.status_code == 200, (path, first.status_code, first.text[:300])
            count = len(first.json())
            timings = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = client.get(url)
                response.read()
                timings.append((time.perf_counter() - started) * 1000)
            out.append((label, percentile(timings, 50), percentile(timings, 95), count))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="keep the built indexes in this directory")
    parser.add_argument("--reuse", type=Path, help="search indexes built earlier with --keep")
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--locked", action="store_true", help="search as a source-locked user (see above)"
    )
    who.add_argument(
        "--user", action="store_true", help="search as a user who sees every source (see above)"
    )
    parser.add_argument(
        "--postgresql-from-sqlite",
        action="store_true",
        help="fill the PostgreSQL index by copying the rows the bookkeeping wrote into the "
        "SQLite index (in --keep/--reuse DIR) instead of running the bookkeeping again",
    )
    args = parser.parse_args()

    workdir = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="qido-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    instances = args.studies * SERIES_PER_STUDY * INSTANCES_PER_SERIES + BIG_SERIES
    print(f"index: {args.studies + 1:,} studies, {instances:,} instances")
    results = {}
    for database in args.databases.split(","):
        data_dir = workdir / database / "data"
        url_file = workdir / database / "url"
        if args.reuse and url_file.exists():
            url = url_file.read_text()
        elif database == "postgresql" and args.postgresql_from_sqlite:
            url = fresh_pg_database()
            data_dir.mkdir(parents=True, exist_ok=True)
            url_file.write_text(url)
            print("copying the SQLite index into PostgreSQL ...", flush=True)
            sqlite_url = (workdir / "sqlite" / "url").read_text()
            seconds, total = copy_index(sqlite_url, url, data_dir)
            print(f"  copied {total:,} rows in {seconds:,.0f} s")
        else:
            if database == "sqlite":
                url = f"sqlite:///{data_dir / 'index.sqlite3'}"
            else:
                url = fresh_pg_database()
            data_dir.mkdir(parents=True, exist_ok=True)
            url_file.write_text(url)
            print(f"building the {database} index ...", flush=True)
            seconds, total = build_index(url, data_dir, args.studies)
            print(f"  built {total:,} instances in {seconds:,.0f} s ({total / seconds:,.0f}/s)")
        if args.reuse and database == "sqlite":
            # An interrupted build never reached its ANALYZE.
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
            engine.dispose()
        headers = None
        if args.locked or args.user:
            headers = {"Authorization": f"Bearer {user_key(data_dir, url, args.locked)}"}
        server = start_tessera(
            "sqlite",
            {
                "TESSERA_DATA_DIR": str(data_dir),
                "TESSERA_DATABASE_URL": url,
                "TESSERA_LOG_LEVEL": "WARNING",
            },
        )
        try:
            results[database] = measure(server, args.studies, args.repeat, headers)
        finally:
            server.stop()
        if not (args.keep or args.reuse) and database == "postgresql":
            from common import drop_pg_database

            drop_pg_database(url)
    if not (args.keep or args.reuse):
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'query':34} " + " ".join(f"{db + ' p50/p95 ms (n)':>30}" for db in results))
    labels = [label for label, *_ in next(iter(results.values()))]
    for index, label in enumerate(labels):
        cells = []
        for rows in results.values():
            _, p50, p95, count = rows[index]
            cells.append(f"{p50:>12.1f} / {p95:>6.1f} ({count:>4})")
        print(f"{label:34} " + " ".join(f"{c:>30}" for c in cells))
    print(
        f"(HTTP round trip, keep-alive client, {args.repeat} runs each; os.cpu_count()={os.cpu_count()})"
    )


if __name__ == "__main__":
    main()
