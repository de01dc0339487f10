"""Orders benchmark (issue 13): Modality Worklist C-FIND and order search with 10,000 open
orders, and what attaching an instance to its order adds to ingest.

Builds an index with N orders (two sources, 20 stations, 4 modalities, 10 days) with the
rows `services.orders.create_order` writes, in multi-row INSERTs (`insert_orders`: 10,000
orders in seconds instead of minutes), starts `tessera serve` on it (DIMSE listener on), then prints
p50/p95 of

    findscu -W (a new process and association each time) for one station and one day
    GET /api/v1/orders?patient_name=..., ?accession_number=..., date range + modality,
        the default list (newest first)
    GET /dicomweb/workitems (UPS-RS) for one station and day, a name, an accession, and
        GET /dicomweb/workitems/{uid}

and, in this process, the time of `ingest_file` for header-only instances whose study is an
order's, with the attach step on and replaced by a no-op (the difference is its cost); and
over HTTP the median STOW-RS time of a 10-instance study that attaches to its order (attach,
status change, coercion: docs/orders.md "Coercion") against one that has no order.

    python benchmarks/orders.py [--orders 10000] [--databases sqlite,postgresql] [--repeat 40]
    python benchmarks/orders.py --attach-only --orders 100 [--stow-studies 40] [--stow-size 256]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (  # noqa: E402
    drop_pg_database,
    free_port,
    fresh_pg_database,
    percentile,
    start_tessera,
)
from sqlalchemy import Connection  # noqa: E402

from tessera.archive import Archive, migrate_index  # noqa: E402
from tessera.config import Settings  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402
from tessera.index import changes  # noqa: E402
from tessera.index import order_store as store  # noqa: E402
from tessera.index.order_store import HISTORY, ORDER, STEP, OrderSearch  # noqa: E402
from tessera.index.orders import SCHEDULED, new_workitem_uid  # noqa: E402
from tessera.index.sources import add_source, source_pk_by_name  # noqa: E402
from tessera.scope import Scope, full_scope  # noqa: E402
from tessera.services import ingest as ingest_service  # noqa: E402
from tessera.services import orders as o  # noqa: E402
from tessera.synthetic import StudySpec, ct_image, header_only_instance  # noqa: E402

FAMILY = ["SMITH", "JONES", "MULLER", "GARCIA", "TANAKA", "ROSSI", "DUBOIS", "KIM", "NGUYEN"]
MODALITIES = ["CT", "MR", "CR", "US"]
FIRST_DAY = date(2026, 12, 1)
SOURCES = ("ClinicA", "ClinicB")


def order_body(number: int, rng: random.Random) -> dict:
    """The JSON of order `number`: 20 stations x 10 days, so 50 steps per station and day
    at 10,000 orders."""
    day = FIRST_DAY + timedelta(days=(number // 20) % 10)
    modality = MODALITIES[number % 4]
    return {
        "accession_number": f"A{number:07d}",
        "patient_name": f"{rng.choice(FAMILY)}{number % 97}^PAT",
        "patient_id": f"P{number:07d}",
        "source": "ClinicA" if number % 2 else "ClinicB",
        "scheduled_procedure_steps": [
            {
                "start": f"{day.isoformat()}T{8 + number % 10:02d}:00:00",
                "modality": modality,
                "scheduled_station_ae_title": f"{modality}{(number // 4) % 5:02d}",
            }
        ],
    }


def insert_orders(conn: Connection, scope: Scope, bodies: list[dict]) -> None:
    """What `services.orders.create_order` writes for new orders (the order row, its steps,
    the SCHEDULED history row and the `order.status_changed` change), with one multi-row
    INSERT per table instead of about ten statements per order: the values go through the
    same parsing (`_order_values`), only the round trips are batched. `build` checks the
    result against `create_order` field by field."""
    sources = {name: source_pk_by_name(conn, scope.tenant_id, name) for name in SOURCES}
    rows, steps = [], []
    for body in bodies:
        values, order_steps = o._order_values(body, partial=False)
        values.update(
            tenant_id=scope.tenant_id,
            source_pk=sources[body["source"]],
            status=SCHEDULED,
            accession_number=body["accession_number"],
            study_instance_uid=generate_uid(prefix=None),
        )
        rows.append(values)
        steps.append(order_steps or [])
    keys = conn.execute(
        ORDER.insert().returning(ORDER.c.id, sort_by_parameter_order=True), rows
    ).scalars()
    order_pks = list(keys)
    conn.execute(
        STEP.insert(),
        [
            {"order_pk": pk, "tenant_id": scope.tenant_id, "workitem_uid": new_workitem_uid(), **s}
            for pk, order_steps in zip(order_pks, steps, strict=True)
            for s in order_steps
        ],
    )
    conn.execute(
        HISTORY.insert(),
        [
            {
                "order_pk": pk,
                "from_status": None,
                "to_status": SCHEDULED,
                "principal": scope.principal,
                "reason": "created",
            }
            for pk in order_pks
        ],
    )
    changes.defer_changes(
        conn,
        scope.tenant_id,
        [
            changes.NewChange(
                row["source_pk"],
                changes.ORDER_STATUS_CHANGED,
                row["study_instance_uid"],
                detail={
                    "order_id": pk,
                    "accession_number": row["accession_number"],
                    "from_status": None,
                    "order_status": SCHEDULED,
                    "reason": "created",
                },
            )
            for pk, row in zip(order_pks, rows, strict=True)
        ],
    )


def _comparable(order: store.Order) -> dict:
    skip = {"id", "study_instance_uid", "created_at", "updated_at", "accession_number"}
    values = {k: v for k, v in vars(order).items() if k not in skip}
    values["steps"] = [vars(step) for step in order.steps]
    return values


def build(archive: Archive, count: int) -> None:
    """`count` orders, 2,000 per transaction. The first goes through `create_order` and the
    second through `insert_orders`; the two must read back alike."""
    scope = full_scope(archive.default_tenant.id, "bench")
    rng = random.Random(13)
    with archive.database.write() as conn:
        for name in SOURCES:
            add_source(conn, scope.tenant_id, name)
    bodies = [order_body(number, rng) for number in range(count)]
    with archive.database.write() as conn:
        reference, _ = o.create_order(conn, scope, bodies[0])
        insert_orders(conn, scope, bodies[1:2])
        twin = o.search_orders(
            conn, scope, OrderSearch(accession_number=bodies[1]["accession_number"])
        )[0]
        again = o.search_orders(conn, scope, OrderSearch(accession_number="A0000000"))[0]
        check = {**bodies[1], "accession_number": "CHECK"}
        created, _ = o.create_order(conn, scope, check)
        assert _comparable(created) == _comparable(twin), (created, twin)
        assert again.id == reference.id
        o.cancel_order(conn, scope, created.id, "benchmark check")  # not an open order
    for first in range(2, count, 2000):
        with archive.database.write() as conn:
            insert_orders(conn, scope, bodies[first : first + 2000])
    if archive.database.engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load (here sooner): the planner's statistics.
        # SQLite keeps the fixed statistics of migration 0016.
        with archive.database.write() as conn:
            conn.exec_driver_sql("ANALYZE")


def timed(call, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return percentile(samples, 50), percentile(samples, 95)


def echoscu(port: int) -> None:
    """The association floor: a process, an association and a C-ECHO, nothing else."""
    subprocess.run(
        ["/usr/bin/echoscu", "-aet", "BENCH", "-aec", "TESSERA", "127.0.0.1", str(port)],
        capture_output=True,
        check=True,
    )


def findscu(port: int) -> int:
    out = subprocess.run(
        [
            "/usr/bin/findscu",
            "-W",
            "-aet",
            "BENCH",
            "-aec",
            "TESSERA",
            "-k",
            "PatientName",
            "-k",
            "PatientID",
            "-k",
            "AccessionNumber",
            "-k",
            "StudyInstanceUID",
            "-k",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT02",
            "-k",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate="
            + (FIRST_DAY + timedelta(days=2)).strftime("%Y%m%d"),
            "-k",
            "ScheduledProcedureStepSequence[0].Modality",
            "127.0.0.1",
            str(port),
        ],
        capture_output=True,
        check=True,
    )
    return out.stderr.count(b"Find Response:")


def attach_cost(
    archive: Archive, tmp: Path, studies: int = 60, per_study: int = 10
) -> tuple[float, float]:
    """Mean ingest_file time per study (ms) of `per_study` header-only instances whose study
    is an order's, with attaching on and with it replaced by a no-op (alternating studies,
    so caches and machine load treat both alike)."""
    scope = full_scope(archive.default_tenant.id, "bench")
    with archive.database.read() as conn:
        source = source_pk_by_name(conn, scope.tenant_id, "ClinicA")
    with archive.database.write() as conn:
        orders = [
            o.create_order(
                conn,
                scope,
                {"accession_number": f"ATT{n}", "patient_id": "PAT-1", "source": "ClinicA"},
            )[0]
            for n in range(studies)
        ]
    real = ingest_service.attach_on_ingest

    def noop(*args: object, **kwargs: object) -> None:
        return None

    totals: dict[bool, list[float]] = {True: [], False: []}
    for n, order in enumerate(orders):
        attach = n % 2 == 0
        ingest_service.attach_on_ingest = real if attach else noop  # type: ignore[assignment]
        elapsed = 0.0
        for number in range(per_study):
            data = header_only_instance(
                {
                    "StudyInstanceUID": order.study_instance_uid,
                    "SeriesInstanceUID": f"2.25.{n + 1}",
                    "SOPInstanceUID": f"2.25.{n + 1}{number + 1:04d}",
                    "InstanceNumber": number + 1,
                    "PatientID": "PAT-1",
                    "Modality": "CT",
                }
            )
            path = tmp / f"{n}-{number}.dcm"
            path.write_bytes(data)
            start = time.perf_counter()
            outcome = ingest_service.ingest_file(
                archive, scope, path, hashlib.sha256(data).hexdigest(), source
            )
            elapsed += (time.perf_counter() - start) * 1000
            assert outcome.stored, outcome.message
        totals[attach].append(elapsed)
    ingest_service.attach_on_ingest = real
    return percentile(totals[True], 50), percentile(totals[False], 50)


def stow_orders(archive: Archive, count: int) -> list[str]:
    """`count` open orders of ClinicA (patient PAT-1) for the STOW-RS figure: their UIDs."""
    scope = full_scope(archive.default_tenant.id, "bench")
    with archive.database.write() as conn:
        return [
            o.create_order(
                conn,
                scope,
                {
                    "accession_number": f"STW{n}",
                    "patient_id": "PAT-1",
                    "patient_name": "ORDERED^PATIENT",
                    "source": "ClinicA",
                },
            )[0].study_instance_uid
            for n in range(count)
        ]


def stow_attach_cost(
    root: str, client: httpx.Client, order_uids: list[str], per_study: int, size: int
) -> tuple[float, float]:
    """Median STOW-RS time (ms) of one `per_study`-instance study (CT slices of size x size)
    in one request, for a study that attaches to its order (the order's Study Instance UID:
    attach, order status, coercion rows) and for one without an order, alternating."""
    totals: dict[bool, list[float]] = {True: [], False: []}
    for n, order_uid in enumerate(order_uids):
        for attach in (n % 2 == 0, n % 2 != 0):
            study = StudySpec(
                patient_name="MODALITY^TYPED",
                accession_number="MOD-ACC",
                study_instance_uid=order_uid if attach else generate_uid(),
            )
            series = generate_uid()
            parts = [ct_image(study, series, k + 1, size, size) for k in range(per_study)]
            body = multipart_writer.body("benchboundary", parts)
            start = time.perf_counter()
            response = client.post(
                f"{root}/studies",
                params={"source": "ClinicA"},
                content=body,
                headers={
                    "Content-Type": 'multipart/related; type="application/dicom"; '
                    "boundary=benchboundary",
                    "Accept": "application/dicom+json",
                },
            )
            totals[attach].append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text
    return percentile(totals[True], 50), percentile(totals[False], 50)


def ups_search(root: str, client: httpx.Client, database: str, repeat: int) -> None:
    """UPS-RS Search Workitems (the worklist SQL of findscu -W, over HTTP) and Retrieve."""
    day = (FIRST_DAY + timedelta(days=2)).strftime("%Y%m%d")
    uid = ""
    for label, params in (
        (
            "station + day",
            {
                "ScheduledStationNameCodeSequence.CodeValue": "CT02",
                "ScheduledProcedureStepStartDateTime": f"{day}-{day}",
            },
        ),
        ("PatientName=SMITH*", {"PatientName": "SMITH*", "limit": "100"}),
        ("accession", {"ReferencedRequestSequence.AccessionNumber": "A0004242"}),
    ):

        def call(params=params) -> None:  # type: ignore[no-untyped-def]
            nonlocal uid
            response = client.get(f"{root}/workitems", params=params)
            assert response.status_code == 200, response.text
            uid = uid or response.json()[0]["00080018"]["Value"][0]

        p50, p95 = timed(call, repeat)
        print(f"[{database}] GET /workitems?{label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")

    def retrieve() -> None:
        assert client.get(f"{root}/workitems/{uid}").status_code == 200

    p50, p95 = timed(retrieve, repeat)
    print(f"[{database}] GET /workitems/{{uid}}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")


class _AttachOnly(Exception):
    """--attach-only: the server part stops after the STOW-RS figure."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument(
        "--attach-only",
        action="store_true",
        help="only the attach figures (ingest_file and STOW-RS), on --orders orders",
    )
    parser.add_argument("--stow-studies", type=int, default=40, help="STOW-RS pairs timed")
    parser.add_argument("--stow-size", type=int, default=256, help="CT slice rows = columns")
    args = parser.parse_args()
    for database in args.databases.split(","):
        workdir = Path(tempfile.mkdtemp(prefix="tessera-orders-bench-"))
        url = (
            fresh_pg_database()
            if database == "postgresql"
            else f"sqlite:///{workdir / 'index.sqlite3'}"
        )
        settings = Settings(data_dir=workdir / "data", database_url=url)
        migrate_index(settings)
        archive = Archive.open(settings)
        started = time.perf_counter()
        build(archive, args.orders)
        print(f"[{database}] {args.orders} orders built in {time.perf_counter() - started:.1f} s")
        order_uids = stow_orders(archive, args.stow_studies)
        dimse_port = free_port()
        server = start_tessera(
            database,
            {
                "TESSERA_DATABASE_URL": url,
                "TESSERA_DATA_DIR": str(workdir / "data"),
                "TESSERA_DIMSE_PORT": str(dimse_port),
                "TESSERA_DIMSE_ACCEPT_UNKNOWN": "true",
                "TESSERA_WORKERS": "1",
            },
        )
        try:
            time.sleep(1)
            client = httpx.Client(timeout=60)
            with_attach, without = stow_attach_cost(
                server.dicomweb, client, order_uids, 10, args.stow_size
            )
            print(
                f"[{database}] STOW-RS of a 10-instance study ({args.stow_size}x{args.stow_size} "
                f"CT, median of {len(order_uids)}): attached to its order {with_attach:.1f} ms, "
                f"no order {without:.1f} ms ({(with_attach / without - 1) * 100:+.1f}%)"
            )
            if args.attach_only:
                raise _AttachOnly
            port = dimse_port
            p50, p95 = timed(lambda: echoscu(port), args.repeat)  # noqa: B023
            print(f"[{database}] echoscu (association floor): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
            items = findscu(port)
            p50, p95 = timed(lambda: findscu(port), args.repeat)  # noqa: B023
            print(
                f"[{database}] MWL findscu -W (one station, one day: {items} items): "
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms"
            )
            api = server.dicomweb.replace("/dicomweb", "/api/v1")
            for label, params in (
                ("patient_name=SMITH", {"patient_name": "SMITH"}),
                ("accession_number", {"accession_number": "A0004242"}),
                (
                    "dates + modality",
                    {
                        "scheduled_from": "2026-12-03",
                        "scheduled_to": "2026-12-04",
                        "modality": "MR",
                        "limit": "100",
                    },
                ),
                ("default list", {"limit": "100"}),
            ):

                def call(params=params, client=client, api=api) -> None:  # type: ignore[no-untyped-def]
                    response = client.get(f"{api}/orders", params=params)
                    assert response.status_code == 200, response.text

                p50, p95 = timed(call, args.repeat)
                print(f"[{database}] GET /orders?{label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
            ups_search(server.dicomweb, client, database, args.repeat)
        except _AttachOnly:
            pass
        finally:
            server.stop()
        with_attach, without = attach_cost(archive, workdir)
        print(
            f"[{database}] ingest of a 10-instance study for an order (median): with attach "
            f"{with_attach:.1f} ms, without {without:.1f} ms "
            f"({(with_attach / without - 1) * 100:+.1f}%)"
        )
        archive.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if database == "postgresql":
            drop_pg_database(url)


if __name__ == "__main__":
    main()
