"""Migration 0010_identity on an index that already holds data: nothing is lost or re-keyed,
no identity is linked, sources get no default issuer, linked matching is on."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from tessera.index.migrate import alembic_config, upgrade_to_head


def test_0010_keeps_existing_patients_and_studies(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(database_url)
    config = alembic_config(database_url)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0009_reports")
        conn.commit()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenant (id, name, duplicate_policy) VALUES (1, 'default', 'reject')")
        )
        conn.execute(
            text(
                "INSERT INTO source (id, tenant_id, name, description) VALUES (1, 1, 'default', '')"
            )
        )
        for pk, patient_id, issuer in ((1, "12345", ""), (2, "12345", "SITE-B"), (3, "777", "")):
            conn.execute(
                text(
                    "INSERT INTO patient (id, tenant_id, patient_id, issuer_of_patient_id, patient_name,"
                    " patient_name_norm) VALUES (:pk, 1, :pid, :issuer, 'DOE^JANE', 'DOE^JANE')"
                ),
                {"pk": pk, "pid": patient_id, "issuer": issuer},
            )
        before = conn.execute(text("SELECT * FROM patient ORDER BY id")).all()
    upgrade_to_head(engine)
    with engine.connect() as conn:
        after = conn.execute(
            text(
                "SELECT id, tenant_id, patient_id, issuer_of_patient_id, patient_name,"
                " patient_name_norm, patient_birth_date, patient_sex, created_at FROM patient ORDER BY id"
            )
        ).all()
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert (
            conn.execute(text("SELECT count(*) FROM patient WHERE person_pk IS NOT NULL")).scalar()
            == 0
        )
        assert conn.execute(text("SELECT default_issuer_of_patient_id FROM source")).scalar() == ""
        assert conn.execute(text("SELECT linked_matching FROM tenant")).scalar() in (True, 1)
        for table in ("patient_link", "patient_link_event", "other_patient_id"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
    # And back down: the 0005 schema with the same rows.
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009_reports")
        conn.commit()
        assert [tuple(r) for r in conn.execute(text("SELECT * FROM patient ORDER BY id"))] == [
            tuple(r) for r in before
        ]
    engine.dispose()
