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

The PATIENT level (C-FIND, `{api}/patients`) shows the order's identity too: the study moves
to the patient row of the order's Patient ID and Issuer (created when missing) and that row
takes the order's name, birth date and sex, the RIS being the later word on the identity
(an identity correction after it wins again). A source-locked caller's patients are built
from their own sources' per-source rows, so they see the order's values only for the
order's source. A study that also holds another source's instances keeps its patient row
(moving it would take the other source's identity with it); only the demographics of a row
with the order's own key change.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tessera.index.coercion import index_values, order_coercion, parse, with_source_values
from tessera.index.identity_models import StudyCoercion
from tessera.index.models import Patient, Study, StudySource
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
    _patient_shows_order(conn, order.tenant_id, order.source_pk, study_pk, columns)


_KEY = ("patient_id", "issuer_of_patient_id")
_DEMOGRAPHICS = ("patient_name", "patient_name_norm", "patient_birth_date", "patient_sex")


def _patient_shows_order(
    conn: Connection, tenant_id: int, source_pk: int, study_pk: int, columns: dict
) -> None:
    """The study's patient row is the order's identity and shows its demographics."""
    study = conn.execute(
        select(
            Study.patient_pk,
            *(Study.__table__.c[name] for name in _KEY + _DEMOGRAPHICS),
            Patient.patient_id.label("row_patient_id"),
            Patient.issuer_of_patient_id.label("row_issuer"),
        )
        .join(Patient, Patient.id == Study.patient_pk)
        .where(Study.id == study_pk)
    ).one()
    key = {name: getattr(study, name) or "" for name in _KEY}
    demographics = {name: columns[name] for name in _DEMOGRAPHICS if name in columns}
    current = (study.row_patient_id, study.row_issuer)
    patient_pk = study.patient_pk
    if tuple(current) != (key["patient_id"], key["issuer_of_patient_id"]):
        shared = conn.execute(
            select(StudySource.id)
            .where(StudySource.study_pk == study_pk, StudySource.source_pk != source_pk)
            .limit(1)
        ).first()
        if shared is not None:
            return  # another source's identity is on this patient row too: leave it
        patient_pk = _patient_row(
            conn, tenant_id, key, {name: getattr(study, name) for name in _DEMOGRAPHICS}
        )
        conn.execute(update(Study).where(Study.id == study_pk).values(patient_pk=patient_pk))
    if demographics:
        conn.execute(update(Patient).where(Patient.id == patient_pk).values(**demographics))


def _patient_row(conn: Connection, tenant_id: int, key: dict, values: dict) -> int:
    """The live patient row of `key` (created with `values` when missing; a merged-away
    row gives its survivor)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(Patient)
        .on_conflict_do_nothing(index_elements=["tenant_id", *_KEY])
        .values(tenant_id=tenant_id, **key, **values)
    )
    pk, merged_into = conn.execute(
        select(Patient.id, Patient.merged_into_pk).where(
            Patient.tenant_id == tenant_id,
            Patient.patient_id == key["patient_id"],
            Patient.issuer_of_patient_id == key["issuer_of_patient_id"],
        )
    ).one()
    seen = {pk}
    while merged_into is not None and merged_into not in seen:
        seen.add(merged_into)
        pk, merged_into = conn.execute(
            select(Patient.id, Patient.merged_into_pk).where(Patient.id == merged_into)
        ).one()
    return pk
