"""Group commit's rows, timed in one process without HTTP or a profiler.

Stores the instances of `stow_ingest.generate` (512x512 CT plus RLE MR, 10 per request) with
`services.ingest.ingest_files`, GROUP_PARTS files at a time as multipart STOW-RS does, into
an archive on a temporary folder, on SQLite and on PostgreSQL. Prints, per instance: wall
time and process CPU of `ingest_files` (parse, fsyncs and rows), wall time of the rows alone
(`_record_group`, the group's transaction), and the SQL statements sent (SQLAlchemy's
`before_cursor_execute`, savepoints and COMMIT included; an executemany counts once).

    python benchmarks/ingest_group.py [--instances 400] [--rounds 3] [--databases sqlite,postgresql]

Each round stores fresh UIDs (new patients, studies and series) into the same archive; the
median round is printed. To compare two versions, run the script of one with the other's
code first on PYTHONPATH, alternately.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import drop_pg_database, fresh_pg_database  # noqa: E402
from stow_ingest import generate  # noqa: E402

from tessera.archive import Archive, migrate_index  # noqa: E402
from tessera.config import Settings  # noqa: E402
from tessera.dicomweb.stow import GROUP_PARTS  # noqa: E402
from tessera.scope import full_scope  # noqa: E402
from tessera.services import ingest  # noqa: E402


class Timed:
    """Wall time spent in `ingest._record_group` (wrapped in place: `_store_group` looks it
    up by name at each call)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.original = ingest._record_group

    def __enter__(self) -> Timed:
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        ingest._record_group = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        ingest._record_group = self.original  # type: ignore[assignment]


def one_round(archive: Archive, count: int) -> dict[str, float]:
    scope = full_scope(archive.default_tenant.id, "bench")
    source_pk = ingest.resolve_upload_source(archive, scope, None)
    spool = archive.spool_dir
    spool.mkdir(parents=True, exist_ok=True)
    groups: list[list[tuple[Path, str]]] = []
    serial = 0
    for batch in generate(count):
        for start in range(0, len(batch), GROUP_PARTS):
            group = []
            for data in batch[start : start + GROUP_PARTS]:
                serial += 1
                path = spool / f"bench-{time.monotonic_ns()}-{serial}.dcm"
                path.write_bytes(data)
                group.append((path, hashlib.sha256(data).hexdigest()))
            groups.append(group)
    statements: Counter[str] = Counter()

    def counted(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        words = statement.split()
        statements[" ".join(words[:3]).lower()] += 1

    engine = archive.database.engine
    event.listen(engine, "before_cursor_execute", counted)
    failed = 0
    try:
        with Timed() as rows:
            wall, cpu = time.perf_counter(), time.process_time()
            for group in groups:
                failed += sum(
                    not o.stored for o in ingest.ingest_files(archive, scope, group, source_pk)
                )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        event.remove(engine, "before_cursor_execute", counted)
    if failed:
        raise SystemExit(f"{failed} instances were not stored")
    return {
        "wall_ms": wall * 1000 / count,
        "cpu_ms": cpu * 1000 / count,
        "rows_ms": rows.seconds * 1000 / count,
        "statements": sum(statements.values()) / count,
        "kinds": statements,  # type: ignore[dict-item]
    }


def run(database: str, count: int, rounds: int, show_kinds: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tessera-ingest-group-"))
    url = f"sqlite:///{workdir / 'index.sqlite3'}"
    if database == "postgresql":
        url = fresh_pg_database()
    try:
        settings = Settings(data_dir=workdir / "data", database_url=url)
        migrate_index(settings)
        archive = Archive.open(settings)
        try:
            results = [one_round(archive, count) for _ in range(rounds)]
        finally:
            archive.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if database == "postgresql":
            drop_pg_database(url)
    for number, r in enumerate(results, 1):
        print(
            f"  {database:10s} round {number}: wall {r['wall_ms']:.2f} ms, cpu {r['cpu_ms']:.2f} ms, "
            f"rows {r['rows_ms']:.2f} ms, {r['statements']:.2f} statements per instance"
        )
    median = {k: statistics.median(r[k] for r in results) for k in ("wall_ms", "cpu_ms", "rows_ms")}
    print(
        f"{database:10s} median: wall {median['wall_ms']:.2f} ms, cpu {median['cpu_ms']:.2f} ms, "
        f"rows {median['rows_ms']:.2f} ms per instance; "
        f"{results[-1]['statements']:.2f} statements per instance",
        flush=True,
    )
    if show_kinds:
        kinds: Counter[str] = results[-1]["kinds"]  # type: ignore[assignment]
        for kind, n in kinds.most_common():
            print(f"    {n / count:6.2f}  {kind}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--kinds", action="store_true", help="statements per instance by kind")
    args = parser.parse_args()
    print(f"{args.instances} instances per round, groups of {GROUP_PARTS}", flush=True)
    for database in args.databases.split(","):
        run(database, args.instances, args.rounds, args.kinds)


if __name__ == "__main__":
    main()
