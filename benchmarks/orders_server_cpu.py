"""The server side of each order and worklist query (issue 13), in this process: the CPU time
(p50 and minimum of `time.process_time`) of the SQL and of building the answer, without HTTP,
association or the machine's other load (on a shared machine the wall clock of
benchmarks/orders.py measures mostly the load).

    UPS-RS Search Workitems: one station and day, PatientName=SMITH* limit 100, an accession
        (parse, worklist SQL, DICOM JSON of every workitem, orjson)
    GET /api/v1/orders: patient_name=SMITH (limit 100), accession, dates + modality, default
        (parse, search SQL with the steps, JSON)
    MWL C-FIND, one station and day (worklist SQL, one pydicom dataset per item, encoded as
        pynetdicom sends it)

Builds N orders the way benchmarks/orders.py does, or uses an index it built (--database).

    python benchmarks/orders_server_cpu.py [--orders 10000] [--databases sqlite,postgresql]
    python benchmarks/orders_server_cpu.py --database sqlite:////path/index.sqlite3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import encode
from starlette.datastructures import QueryParams

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import drop_pg_database, fresh_pg_database  # noqa: E402
from orders import build  # noqa: E402

from tessera.archive import Archive, migrate_index  # noqa: E402
from tessera.config import Settings  # noqa: E402
from tessera.dicomweb.orders_api import order_json, parse_search  # noqa: E402
from tessera.dicomweb.workitem_dataset import workitem_json  # noqa: E402
from tessera.dicomweb.workitem_query import parse_workitem_search  # noqa: E402
from tessera.index.worklist import iter_worklist  # noqa: E402
from tessera.scope import full_scope  # noqa: E402
from tessera.scp import mwl  # noqa: E402
from tessera.services import orders as o  # noqa: E402
from tessera.services import workitems as ups  # noqa: E402


def cases(archive: Archive) -> dict[str, Callable[[], object]]:
    scope = full_scope(archive.default_tenant.id, "bench")
    most = archive.settings.qido_max_results

    def workitems(query_string: str) -> Callable[[], object]:
        def run() -> object:
            query = parse_workitem_search(query_string, most)
            with archive.database.read() as conn:
                rows = ups.search_workitems(conn, scope, query)
            return orjson.dumps([workitem_json(row) for row in rows[: query.limit - 1]])

        return run

    def orders(params: dict[str, str]) -> Callable[[], object]:
        def run() -> object:
            search, _ = parse_search(QueryParams(params))
            with archive.database.read() as conn:
                found = o.search_orders(conn, scope, search)
            return orjson.dumps([order_json(order) for order in found])

        return run

    identifier = Dataset()
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID"):
        setattr(identifier, keyword, "")
    step = Dataset()
    step.ScheduledStationAETitle = "CT02"
    step.ScheduledProcedureStepStartDate = "20261203"
    step.Modality = ""
    identifier.ScheduledProcedureStepSequence = Sequence([step])

    def worklist() -> object:
        query, keys, step_keys = mwl.build_worklist_query(identifier, most)
        plan = mwl.response_plan(keys, step_keys)
        with archive.database.read() as conn:
            return [
                encode(mwl.worklist_item(row, plan), True, True)
                for row in iter_worklist(conn, scope, query)
            ]

    day = "ScheduledProcedureStepStartDateTime=20261203-20261203"
    return {
        "UPS-RS station + day": workitems(f"ScheduledStationAETitle=CT02&{day}"),
        "UPS-RS PatientName=SMITH* limit 100": workitems("PatientName=SMITH*&limit=100"),
        "UPS-RS accession": workitems("AccessionNumber=A0004242"),
        "orders patient_name=SMITH limit 100": orders({"patient_name": "SMITH", "limit": "100"}),
        "orders accession_number": orders({"accession_number": "A0004242"}),
        "orders dates + modality": orders(
            {
                "scheduled_from": "2026-12-03",
                "scheduled_to": "2026-12-04",
                "modality": "MR",
                "limit": "100",
            }
        ),
        "orders default list": orders({"limit": "100"}),
        "MWL station + day (50 items)": worklist,
    }


def measure(label: str, archive: Archive, repeat: int) -> None:
    for name, run in cases(archive).items():
        run()
        samples = []
        for _ in range(repeat):
            start = time.process_time()
            run()
            samples.append((time.process_time() - start) * 1000)
        samples.sort()
        print(
            f"[{label}] {name}: CPU p50 {samples[len(samples) // 2]:.1f} ms, "
            f"min {samples[0]:.1f} ms",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--database", help="an index benchmarks/orders.py's build made")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-orders-cpu-"))
    try:
        if args.database:
            settings = Settings(data_dir=workdir / "data", database_url=args.database)
            migrate_index(settings)
            archive = Archive.open(settings)
            measure(archive.database.dialect, archive, args.repeat)
            archive.close()
            return
        for database in args.databases.split(","):
            url = (
                fresh_pg_database()
                if database == "postgresql"
                else f"sqlite:///{workdir / 'index.sqlite3'}"
            )
            settings = Settings(data_dir=workdir / "data", database_url=url)
            migrate_index(settings)
            archive = Archive.open(settings)
            build(archive, args.orders)
            measure(database, archive, args.repeat)
            archive.close()
            if database == "postgresql":
                drop_pg_database(url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
