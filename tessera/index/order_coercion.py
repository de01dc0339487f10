"""An order's values on its study (IHE Scheduled Workflow "coercion").

When a study is attached to an order (ingest by Study Instance UID or accession number,
STOW-RS `?order=`, `tessera upload --order`, `POST /orders/{id}/study`, an upload session),
viewers must see the order's accession number and patient as the RIS scheduled them, not
what the modality typed. In the attaching transaction:

- the study's `study_coercion` row takes the order's values (tessera.index.coercion
  `order_coercion`) for the instances of the order's source, merged per keyword with what an
  identity change wrote before: the later writer wins per keyword (a correction after the
  attach overwrites the patient keywords again and keeps the accession number);
- the study row and the order's source's per-source study row (`StudySource`) get the same
  values, so QIDO-RS and C-FIND (study, series and instance level) answer what retrieval
  sends, to every caller who sees that source.

The order belongs to one source (site), and so do its values: a study that also holds
instances of another source (the same Study Instance UID sent by two sites) shows that
source's callers its own values, as received, and sends its instances unchanged; nothing of
the order reaches a caller who cannot see the order's source (docs/orders.md "Coercion").
A caller who sees every source reads the study row, which shows the order's values. The
stored files are never changed.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Connection, delete, select, update

from tessera.index.coercion import index_values, order_coercion, parse, with_source_values
from tessera.index.identity_models import StudyCoercion
from tessera.index.models import Study, StudySource
from tessera.index.order_store import ORDER


def coerce_study_to_order(conn: Connection, order_pk: int, study_pk: int) -> None:
    """The study shows the order's values (index rows and coercion), in the caller's
    transaction (the one that attached it)."""
    order = conn.execute(
        select(
            ORDER.c.tenant_id,
            ORDER.c.source_pk,
            ORDER.c.accession_number,
            ORDER.c.issuer_of_accession_number,
            ORDER.c.patient_id,
            ORDER.c.issuer_of_patient_id,
            ORDER.c.patient_name,
            ORDER.c.patient_birth_date,
            ORDER.c.patient_sex,
        ).where(ORDER.c.id == order_pk)
    ).one()
    values = order_coercion(
        order.accession_number,
        order.issuer_of_accession_number,
        order.patient_id,
        order.issuer_of_patient_id,
        order.patient_name,
        order.patient_birth_date,
        order.patient_sex,
    )
    before = conn.execute(
        select(StudyCoercion.attributes).where(StudyCoercion.study_pk == study_pk)
    ).scalar_one_or_none()
    coercion = with_source_values(parse(before), order.source_pk, values)
    if before is not None:
        conn.execute(delete(StudyCoercion).where(StudyCoercion.study_pk == study_pk))
    conn.execute(
        StudyCoercion.__table__.insert().values(
            study_pk=study_pk, tenant_id=order.tenant_id, attributes=orjson.dumps(coercion)
        )
    )
    columns = index_values(values)
    conn.execute(update(Study).where(Study.id == study_pk).values(**columns))
    conn.execute(
        update(StudySource)
        .where(StudySource.study_pk == study_pk, StudySource.source_pk == order.source_pk)
        .values(**columns)
    )
