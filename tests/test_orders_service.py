"""Order use cases over the real index (SQLite and PostgreSQL): creation is idempotent on the
accession number, updates only while scheduled, status history, Scope in SQL, and a stored
instance attaching to its open order in the ingest transaction."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import insert

from tessera.archive import Archive
from tessera.index.models import Source, Tenant
from tessera.index.order_store import OrderSearch
from tessera.index.sources import add_source, source_pk_by_name
from tessera.scope import Scope, full_scope
from tessera.services import orders as o
from tessera.services.ingest import ingest_file
from tessera.synthetic import header_only_instance
from tests.conftest import migrated_archive


@pytest.fixture
def world(tmp_path, database_url):  # type: ignore[no-untyped-def]
    archive = migrated_archive(tmp_path / "data", database_url)
    tenant = archive.default_tenant.id
    with archive.database.write() as conn:
        clinic_a = add_source(conn, tenant, "ClinicA")
        clinic_b = add_source(conn, tenant, "ClinicB")
        other = conn.execute(
            insert(Tenant).values(name="other", duplicate_policy="reject").returning(Tenant.id)
        ).scalar_one()
        conn.execute(insert(Source).values(tenant_id=other, name="default", description=""))
    yield archive, tenant, {"ClinicA": clinic_a, "ClinicB": clinic_b}, other
    archive.close()


def order_body(accession: str = "ACC1", patient_id: str = "MRN1", **extra: object) -> dict:
    body = {
        "accession_number": accession,
        "patient_name": "Doe^Jane",
        "patient_id": patient_id,
        "patient_birth_date": "1980-02-03",
        "patient_sex": "F",
        "source": "ClinicA",
        "requested_procedure_description": "CT CHEST",
        "scheduled_procedure_steps": [
            {"start": "2026-12-01T10:30:00", "modality": "CT", "scheduled_station_ae_title": "CT1"}
        ],
    }
    body.update(extra)
    return body


def write(archive: Archive, work):  # type: ignore[no-untyped-def]
    with archive.database.write() as conn:
        return work(conn)


def test_create_is_idempotent_and_conflicts_on_another_patient(world) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, _sources, _other = world
    scope = full_scope(tenant, "tech")
    first, created = write(archive, lambda c: o.create_order(c, scope, order_body()))
    again, created_again = write(archive, lambda c: o.create_order(c, scope, order_body()))
    assert created and not created_again
    assert again.id == first.id and again.study_instance_uid == first.study_instance_uid
    assert first.status == "SCHEDULED" and first.patient_name == "Doe^Jane"
    assert first.steps[0].modality == "CT" and str(first.steps[0].start_time) == "10:30:00"
    with pytest.raises(o.OrderConflict, match="another patient"):
        write(archive, lambda c: o.create_order(c, scope, order_body(patient_id="MRN2")))
    # The same accession from another site (source) is another order.
    other_site, created = write(
        archive, lambda c: o.create_order(c, scope, order_body(source="ClinicB"))
    )
    assert created and other_site.id != first.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accession_number": ""}, "accession_number"),
        ({"accession_number": "X" * 17}, "accession_number"),
        ({"patient_birth_date": "1980-13-01"}, "patient_birth_date"),
        ({"patient_sex": "Q"}, "patient_sex"),
        ({"priority": "URGENTISSIMO"}, "priority"),
        ({"source": "NoSuchSite"}, "unknown source"),
        ({"scheduled_procedure_steps": [{"start": "tomorrow"}]}, r"steps\[0\].start"),
        ({"scheduled_procedure_steps": "CT"}, "scheduled_procedure_steps"),
        ({"study_instance_uid": "1.2.abc"}, "study_instance_uid"),
        ({"patient_name": "A\\B"}, "backslash"),
    ],
)
def test_bad_fields_are_named_and_nothing_is_written(world, change, message) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, _sources, _other = world
    scope = full_scope(tenant)
    with pytest.raises(o.InvalidOrder, match=message):
        write(archive, lambda c: o.create_order(c, scope, order_body(**change)))
    with archive.database.read() as conn:
        assert o.search_orders(conn, scope, OrderSearch()) == []


def test_update_only_while_scheduled_and_history(world) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, _sources, _other = world
    scope = full_scope(tenant, "tech")
    order, _ = write(archive, lambda c: o.create_order(c, scope, order_body()))
    updated = write(
        archive,
        lambda c: o.update_order(
            c, scope, order.id, {"priority": "STAT", "scheduled_procedure_steps": []}
        ),
    )
    assert updated.priority == "STAT" and updated.steps == []
    with pytest.raises(o.InvalidOrder, match="accession_number"):
        write(archive, lambda c: o.update_order(c, scope, order.id, {"accession_number": "B"}))
    write(archive, lambda c: o.cancel_order(c, scope, order.id, "patient left"))
    with pytest.raises(o.OrderConflict, match="CANCELLED"):
        write(archive, lambda c: o.update_order(c, scope, order.id, {"priority": "LOW"}))
    with pytest.raises(o.OrderConflict):
        write(archive, lambda c: o.cancel_order(c, scope, order.id))
    with archive.database.read() as conn:
        history = o.status_history(conn, scope, order.id)
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "SCHEDULED"),
        ("SCHEDULED", "CANCELLED"),
    ]
    assert history[1]["reason"] == "patient left" and history[1]["principal"] == "tech"


def test_scope_hides_other_tenants_and_sources(world) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, sources, other = world
    admin = full_scope(tenant)
    order, _ = write(archive, lambda c: o.create_order(c, admin, order_body()))
    locked_b = Scope(tenant, frozenset({sources["ClinicB"]}), permissions=frozenset({"read"}))
    locked_a = Scope(tenant, frozenset({sources["ClinicA"]}), permissions=frozenset({"read"}))
    stranger = full_scope(other)
    with archive.database.read() as conn:
        for scope in (locked_b, stranger):
            with pytest.raises(o.OrderNotFound):
                o.get_order(conn, scope, order.id)
            with pytest.raises(o.OrderNotFound):
                o.status_history(conn, scope, order.id)
            assert o.search_orders(conn, scope, OrderSearch(accession_number="ACC1")) == []
        assert o.get_order(conn, locked_a, order.id).id == order.id
    # A locked technologist cannot create an order for a site it does not see.
    tech_b = Scope(
        tenant,
        frozenset({sources["ClinicB"]}),
        frozenset({sources["ClinicB"]}),
        frozenset({"orders"}),
    )
    with pytest.raises(o.InvalidOrder, match="unknown source"):
        write(archive, lambda c: o.create_order(c, tech_b, order_body()))
    # ... nor change one it cannot see.
    with pytest.raises(o.OrderNotFound):
        write(archive, lambda c: o.cancel_order(c, tech_b, order.id))


def test_search_filters_sort_and_page(world) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, _sources, _other = world
    scope = full_scope(tenant)
    for number, (name, day, modality) in enumerate(
        [
            ("Smith^Ann", "2026-12-01", "CT"),
            ("smithers^bo", "2026-12-02", "MR"),
            ("Jones^Cy", "2026-12-03", "CT"),
        ]
    ):
        write(
            archive,
            lambda c, n=number, nm=name, d=day, m=modality: o.create_order(
                c,
                scope,
                order_body(
                    f"A{n}",
                    f"P{n}",
                    patient_name=nm,
                    scheduled_procedure_steps=[{"start": d, "modality": m}],
                ),
            ),
        )

    def search(**kwargs) -> list[str]:  # type: ignore[no-untyped-def]
        with archive.database.read() as conn:
            return [x.accession_number for x in o.search_orders(conn, scope, OrderSearch(**kwargs))]

    assert search(patient_name_prefix="SMITH", sort="accession_number") == ["A0", "A1"]
    assert search(modality="CT", sort="-scheduled") == ["A2", "A0"]
    assert search(scheduled_from=__import__("datetime").date(2026, 12, 2)) == ["A2", "A1"]
    assert search(sort="scheduled", limit=1, offset=1) == ["A1"]
    assert search(patient_id="P2") == ["A2"]
    assert search(statuses=("CANCELLED",)) == []


def _store(archive: Archive, scope: Scope, source_pk: int, tmp: Path, **attrs: object):  # type: ignore[no-untyped-def]
    data = header_only_instance({"Modality": "CT", "InstanceNumber": 1, **attrs})
    path = tmp / f"{hashlib.sha1(data).hexdigest()}.dcm"
    path.write_bytes(data)
    return ingest_file(archive, scope, path, hashlib.sha256(data).hexdigest(), source_pk)


def test_ingest_attaches_by_study_uid_or_accession_of_the_same_source(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, sources, _other = world
    scope = full_scope(tenant, "dimse:CT1")
    by_uid, _ = write(archive, lambda c: o.create_order(c, scope, order_body("U1")))
    by_acc, _ = write(archive, lambda c: o.create_order(c, scope, order_body("ACC2")))
    wrong_patient, _ = write(archive, lambda c: o.create_order(c, scope, order_body("ACC3")))
    other_site, _ = write(archive, lambda c: o.create_order(c, scope, order_body("ACC4")))

    assert _store(
        archive,
        scope,
        sources["ClinicA"],
        tmp_path,
        StudyInstanceUID=by_uid.study_instance_uid,
        PatientID="MRN1",
        SeriesInstanceUID="2.25.1",
    ).stored
    assert _store(
        archive,
        scope,
        sources["ClinicA"],
        tmp_path,
        StudyInstanceUID="2.25.77",
        AccessionNumber="ACC2",
        PatientID="MRN1",
        SeriesInstanceUID="2.25.2",
    ).stored
    assert _store(
        archive,
        scope,
        sources["ClinicA"],
        tmp_path,
        StudyInstanceUID="2.25.78",
        AccessionNumber="ACC3",
        PatientID="SOMEONE-ELSE",
        SeriesInstanceUID="2.25.3",
    ).stored
    assert _store(
        archive,
        scope,
        sources["ClinicB"],
        tmp_path,
        StudyInstanceUID="2.25.79",
        AccessionNumber="ACC4",
        PatientID="MRN1",
        SeriesInstanceUID="2.25.4",
    ).stored
    with archive.database.read() as conn:
        got = {
            x.accession_number: o.get_order(conn, scope, x.id)
            for x in (by_uid, by_acc, wrong_patient, other_site)
        }
        held = o.status_history(conn, scope, wrong_patient.id)
    assert got["U1"].status == "IN_PROGRESS" and got["U1"].study_pk is not None
    assert got["ACC2"].status == "IN_PROGRESS" and got["ACC2"].study_pk is not None
    # Another patient's images are not merged into the order: held with the reason.
    assert got["ACC3"].status == "SCHEDULED" and got["ACC3"].study_pk is None
    assert "held for review" in held[-1]["reason"]
    # Another site's images never attach to this site's order.
    assert got["ACC4"].status == "SCHEDULED" and got["ACC4"].study_pk is None


def test_attach_study_to_order_explicitly(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive, tenant, sources, other = world
    scope = full_scope(tenant, "uploader")
    order, _ = write(archive, lambda c: o.create_order(c, scope, order_body("E1")))
    # Stored under the default source: no implicit attach, then attached by name.
    assert _store(
        archive,
        scope,
        source_pk_by_name_default(archive, tenant),
        tmp_path,
        StudyInstanceUID="2.25.90",
        PatientID="MRN1",
        SeriesInstanceUID="2.25.91",
    ).stored
    with pytest.raises(o.OrderNotFound):
        write(archive, lambda c: o.attach_study_to_order(c, full_scope(other), order.id, "2.25.90"))
    with pytest.raises(o.OrderNotFound, match="no study"):
        write(archive, lambda c: o.attach_study_to_order(c, scope, order.id, "2.25.404"))
    result = write(archive, lambda c: o.attach_study_to_order(c, scope, order.id, "2.25.90"))
    assert result.attached
    with archive.database.read() as conn:
        assert o.get_order(conn, scope, order.id).status == "IN_PROGRESS"


def source_pk_by_name_default(archive: Archive, tenant: int) -> int:
    with archive.database.read() as conn:
        return source_pk_by_name(conn, tenant, "default")  # type: ignore[return-value]


def test_migration_creates_what_the_models_describe(world) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tessera.index.models import Base

    archive = world[0]
    order_tables = {
        "procedure_order",
        "scheduled_procedure_step",
        "order_status_change",
        "performed_procedure_step",
        "performed_instance",
    }
    with archive.database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    def table_of(change) -> str:  # type: ignore[no-untyped-def]
        item = change[0] if isinstance(change, list) else change
        for part in item[1:]:
            name = getattr(part, "name", None) if not isinstance(part, str) else None
            table = getattr(part, "table", None)
            if table is not None:
                return table.name
            if name in order_tables:
                return name
            if isinstance(part, str) and part in order_tables:
                return part
        return ""

    def pattern_index(change) -> bool:  # type: ignore[no-untyped-def]
        # PostgreSQL-only operator-class indexes: alembic cannot compare them (as for study).
        return change[0] == "add_index" and change[1].name.endswith("_pattern")

    assert [c for c in diff if table_of(c) in order_tables and not pattern_index(c)] == []
