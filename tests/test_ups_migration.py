"""Migration 0011_ups_workitems on an index that already holds orders: every scheduled step
gets its own workitem UID (2.25 form), no Transaction UID; and back down."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from tessera.index.migrate import alembic_config, upgrade_to_head


def test_0011_gives_existing_steps_workitem_uids(database_url: str) -> None:
    engine = create_engine(database_url)
    config = alembic_config(database_url)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0006_orders")
        conn.commit()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenant (id, name, duplicate_policy) VALUES (1, 'default', 'reject')")
        )
        conn.execute(
            text("INSERT INTO source (id, tenant_id, name, description) VALUES (1, 1, 'A', '')")
        )
        conn.execute(
            text(
                "INSERT INTO procedure_order (id, tenant_id, source_pk, status, accession_number,"
                " issuer_of_accession_number, patient_name, patient_id, issuer_of_patient_id,"
                " patient_sex, requested_procedure_id, requested_procedure_description,"
                " requested_procedure_code_value, requested_procedure_coding_scheme,"
                " requested_procedure_code_meaning, referring_physician_name, priority,"
                " reason_for_requested_procedure, study_instance_uid, comments)"
                " VALUES (1, 1, 1, 'SCHEDULED', 'A1', '', 'DOE^JANE', 'P1', '', 'F', '', '',"
                " '', '', '', '', 'ROUTINE', '', '2.25.1', '')"
            )
        )
        for step in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO scheduled_procedure_step (id, order_pk, tenant_id,"
                    " scheduled_procedure_step_id, modality, scheduled_station_ae_title,"
                    " scheduled_station_name, scheduled_performing_physician_name, description,"
                    " position) VALUES (:id, 1, 1, :sps, 'CT', 'CT1', '', '', '', :id)"
                ),
                {"id": step, "sps": str(step)},
            )
    upgrade_to_head(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT workitem_uid, transaction_uid FROM scheduled_procedure_step ORDER BY id")
        ).all()
    uids = [row.workitem_uid for row in rows]
    assert all(uid.startswith("2.25.") and len(uid) <= 64 for uid in uids)
    assert len(set(uids)) == 2
    assert [row.transaction_uid for row in rows] == [None, None]
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006_orders")
        conn.commit()
        assert conn.execute(text("SELECT count(*) FROM scheduled_procedure_step")).scalar() == 2
    engine.dispose()
