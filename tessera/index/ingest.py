"""Ingest bookkeeping: patient, study, series, instance rows for one stored file, in ONE
transaction, with the computed study/series attributes kept current.

Each source's first upload into a study/series also writes that source's own copy of the
study/series values (`StudySource`, `SeriesSource`; source-locked queries read those), and a
removal deletes the copy when the source has no instance left there.

Concurrency: rows are created with INSERT .. ON CONFLICT DO NOTHING then read back, and the
study row is locked (SELECT .. FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already
serializes writers), so two uploads into one study cannot lose each other's counts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from pydicom.dataset import Dataset
from sqlalchemy import Connection, and_, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tessera.index import attributes as a
from tessera.index import changes
from tessera.index.identity_changes import keep_corrected
from tessera.index.identity_models import OtherPatientId
from tessera.index.models import (
    Instance,
    InstanceMetadata,
    Patient,
    Series,
    SeriesSource,
    Source,
    Study,
    StudySource,
)
from tessera.index.source_values import series_values, study_values
from tessera.index.study_completion import mark_pending
from tessera.index.tenancy import duplicate_policy
from tessera.storage.frames import FrameIndex


class RecordOutcome(enum.Enum):
    CREATED = "created"
    IDENTICAL = "identical"  # the same bytes were already stored: idempotent success
    # The SOP Instance is stored with other bytes: the caller compares the data sets
    # (storage/same_content.py) and records again with `compare_content=False` if they differ.
    DIFFERENT_BYTES = "different_bytes"
    CONFLICT = "conflict"  # a different object already has this SOP Instance UID
    REPLACED = "replaced"  # a different object was replaced (tenant policy 'overwrite')
    SERIES_IN_OTHER_STUDY = "series_in_other_study"
    # The SOP Instance, its series or its study already holds instances of sources the
    # uploader cannot see: storing (or answering "identical"/"conflict") would reveal them.
    NOT_VISIBLE = "not_visible"


@dataclass
class RecordResult:
    outcome: RecordOutcome
    # Blob that no row references any more and may be deleted after commit.
    released_blob_key: str | None = None
    # DIFFERENT_BYTES: the blob of the instance already stored.
    stored_blob_key: str | None = None
    # The study the instance was recorded in (CREATED / REPLACED).
    study_pk: int | None = None


@dataclass
class InstanceRecord:
    tenant_id: int
    source_pk: int
    dataset: Dataset
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int
    sha256: str
    dicom_json: bytes
    frames: FrameIndex | None
    pixel_data_vr: str | None
    # Sources the uploader sees (None: all). A source-locked uploader may not add to, or
    # learn about, a study holding instances of other sources.
    visible_source_pks: frozenset[int] | None = None
    # Stop at DIFFERENT_BYTES (instead of applying the duplicate policy) when the SOP
    # Instance is stored with other bytes, so the caller can compare content first
    # (services/ingest.py does; a caller that does not handle DIFFERENT_BYTES leaves it off).
    compare_content: bool = False


class _Statements:
    """Statements built once per dialect; executing a prebuilt statement with a parameter
    dict skips SQLAlchemy's construction cost, which dominated ingest time."""

    def __init__(self, dialect_name: str) -> None:
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        self.insert_patient = dialect.insert(Patient).on_conflict_do_nothing(
            index_elements=["tenant_id", "patient_id", "issuer_of_patient_id"]
        )
        self.insert_study = dialect.insert(Study).on_conflict_do_nothing(
            index_elements=["tenant_id", "study_instance_uid"]
        )
        self.insert_series = dialect.insert(Series).on_conflict_do_nothing(
            index_elements=["tenant_id", "series_instance_uid"]
        )
        self.insert_instance = (
            dialect.insert(Instance)
            .on_conflict_do_nothing(index_elements=["tenant_id", "sop_instance_uid"])
            .returning(Instance.id)
        )
        self.insert_study_source = dialect.insert(StudySource).on_conflict_do_nothing(
            index_elements=["study_pk", "source_pk"]
        )
        self.insert_series_source = dialect.insert(SeriesSource).on_conflict_do_nothing(
            index_elements=["series_pk", "source_pk"]
        )
        self.insert_other_patient_id = dialect.insert(OtherPatientId).on_conflict_do_nothing(
            index_elements=["patient_pk", "source_pk", "patient_id", "issuer_of_patient_id"]
        )
        self.default_issuer = select(Source.default_issuer_of_patient_id).where(
            Source.id == bindparam("source_pk")
        )
        self.insert_metadata = InstanceMetadata.__table__.insert()
        self.find_instance = select(
            Instance.id,
            Instance.sha256,
            Instance.blob_key,
            Instance.series_pk,
            Instance.study_pk,
            Instance.source_pk,
        ).where(
            Instance.tenant_id == bindparam("tenant_id"),
            Instance.sop_instance_uid == bindparam("sop_instance_uid"),
        )
        # has_source: the series already has its per-source row for the uploader's source.
        self.find_series = (
            select(
                Series.id,
                Series.study_pk,
                Series.number_of_series_related_instances,
                SeriesSource.id.label("has_source"),
            )
            .outerjoin(
                SeriesSource,
                and_(
                    SeriesSource.series_pk == Series.id,
                    SeriesSource.source_pk == bindparam("source_pk"),
                ),
            )
            .where(
                Series.tenant_id == bindparam("tenant_id"),
                Series.series_instance_uid == bindparam("series_instance_uid"),
            )
        )
        self.find_patient = select(Patient.id).where(
            Patient.tenant_id == bindparam("tenant_id"),
            Patient.patient_id == bindparam("patient_id"),
            Patient.issuer_of_patient_id == bindparam("issuer_of_patient_id"),
        )
        self.lock_study_by_uid = (
            select(Study.id)
            .where(
                Study.tenant_id == bindparam("tenant_id"),
                Study.study_instance_uid == bindparam("study_instance_uid"),
            )
            .with_for_update()
        )
        self.lock_study = (
            select(
                Study.study_instance_uid,
                Study.modalities_in_study,
                Study.sop_classes_in_study,
                Study.number_of_study_related_instances,
            )
            .where(Study.id == bindparam("study_pk"))
            .with_for_update()
        )
        self.count_series_instances = (
            update(Series)
            .where(Series.id == bindparam("series_pk"))
            .values(
                number_of_series_related_instances=Series.number_of_series_related_instances
                + bindparam("added")
            )
        )
        self.count_study_instances = (
            update(Study)
            .where(Study.id == bindparam("study_pk"))
            .values(
                number_of_study_related_series=Study.number_of_study_related_series
                + bindparam("new_series"),
                number_of_study_related_instances=Study.number_of_study_related_instances
                + bindparam("added"),
                modalities_in_study=bindparam("modalities"),
                sop_classes_in_study=bindparam("sop_classes"),
                updated_at=func.now(),
            )
        )
        self.stored_uids = select(Instance.sop_instance_uid).where(
            Instance.tenant_id == bindparam("tenant_id"),
            Instance.sop_instance_uid.in_(bindparam("uids", expanding=True)),
        )
        # Several instance rows: on PostgreSQL keys taken from the sequence up front, then
        # one pipelined executemany (psycopg spends most of a multi-row INSERT .. RETURNING
        # converting its long query text); on SQLite one multi-row INSERT .. RETURNING (in
        # no particular order: the keys are matched to the rows by SOP Instance UID).
        self.next_instance_keys = select(
            func.nextval(func.pg_get_serial_sequence("instance", "id"))
        ).select_from(func.generate_series(1, bindparam("count")))
        self.insert_instances = Instance.__table__.insert()
        self.insert_instances_returning = Instance.__table__.insert().returning(
            Instance.id, Instance.sop_instance_uid
        )


_STATEMENTS: dict[str, _Statements] = {}


def _sql(conn: Connection) -> _Statements:
    name = conn.dialect.name
    if name not in _STATEMENTS:
        _STATEMENTS[name] = _Statements(name)
    return _STATEMENTS[name]


def find_instance(conn: Connection, tenant_id: int, sop_instance_uid: str):
    return conn.execute(
        _sql(conn).find_instance, {"tenant_id": tenant_id, "sop_instance_uid": sop_instance_uid}
    ).first()


def stored_sop_instance_uids(conn: Connection, tenant_id: int, uids: list[str]) -> set[str]:
    """The UIDs among `uids` the archive already holds in the tenant (any source)."""
    found: set[str] = set()
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        found |= set(
            conn.execute(_sql(conn).stored_uids, {"tenant_id": tenant_id, "uids": chunk}).scalars()
        )
    return found


def record_instance(conn: Connection, record: InstanceRecord) -> RecordResult:
    """Index one stored instance. The caller owns the (write) transaction."""
    existing = find_instance(conn, record.tenant_id, record.sop_instance_uid)
    released: str | None = None
    visible = record.visible_source_pks
    if existing is not None:
        if visible is not None and existing.source_pk not in visible:
            return RecordResult(RecordOutcome.NOT_VISIBLE)
        if existing.sha256 == record.sha256:
            return RecordResult(RecordOutcome.IDENTICAL)
        if record.compare_content:
            return RecordResult(RecordOutcome.DIFFERENT_BYTES, stored_blob_key=existing.blob_key)
        if duplicate_policy(conn, record.tenant_id) != "overwrite":
            return RecordResult(RecordOutcome.CONFLICT)
        _remove_instance(conn, existing)
        released = existing.blob_key

    ds = record.dataset
    sql = _sql(conn)
    series_row = _known_series(conn, record)
    if series_row is not None:
        # Common case (more instances of a series we have): no patient/study upserts.
        study_pk = series_row.study_pk
        study_row = conn.execute(sql.lock_study, {"study_pk": study_pk}).one()
        if _holds_hidden_sources(conn, study_pk, visible):
            return RecordResult(RecordOutcome.NOT_VISIBLE)
        if study_row.study_instance_uid != record.study_instance_uid:
            return RecordResult(RecordOutcome.SERIES_IN_OTHER_STUDY)
        if series_row.number_of_series_related_instances == 0:
            series_row = _known_series(conn, record)  # re-read under the study lock
    else:
        issuer = issuer_of_patient_id(conn, record)
        patient_pk = _upsert_patient(conn, record.tenant_id, ds, issuer)
        _record_other_patient_ids(conn, record, patient_pk)
        study_pk = _upsert_study(conn, record, patient_pk, issuer)
        study_row = conn.execute(sql.lock_study, {"study_pk": study_pk}).one()
        if _holds_hidden_sources(conn, study_pk, visible):
            return RecordResult(RecordOutcome.NOT_VISIBLE)
        series_row = _upsert_series(conn, record, study_pk)
        if series_row.study_pk != study_pk:
            if _holds_hidden_sources(conn, series_row.study_pk, visible):
                return RecordResult(RecordOutcome.NOT_VISIBLE)
            return RecordResult(RecordOutcome.SERIES_IN_OTHER_STUDY)

    inserted = conn.execute(
        sql.insert_instance,
        {
            "tenant_id": record.tenant_id,
            "study_pk": study_pk,
            "series_pk": series_row.id,
            "source_pk": record.source_pk,
            **_instance_columns(record),
        },
    ).first()
    if inserted is None:
        # Lost a race with a concurrent upload of the same SOP Instance UID.
        winner = find_instance(conn, record.tenant_id, record.sop_instance_uid)
        if winner is not None and winner.sha256 == record.sha256:
            return RecordResult(RecordOutcome.IDENTICAL)
        if winner is not None and record.compare_content:
            return RecordResult(RecordOutcome.DIFFERENT_BYTES, stored_blob_key=winner.blob_key)
        return RecordResult(RecordOutcome.CONFLICT)

    conn.execute(sql.insert_metadata, {"instance_pk": inserted.id, **_metadata_columns(record)})
    if series_row.has_source is None:
        _add_source_rows(conn, record, study_pk, series_row.id)
    conn.execute(sql.count_series_instances, {"series_pk": series_row.id, "added": 1})
    conn.execute(
        sql.count_study_instances,
        {
            "study_pk": study_pk,
            "new_series": 1 if series_row.number_of_series_related_instances == 0 else 0,
            "added": 1,
            "modalities": _add_value(study_row.modalities_in_study, a.text(ds, "Modality", 16)),
            "sop_classes": _add_value(study_row.sop_classes_in_study, record.sop_class_uid),
        },
    )
    first_in_study = study_row.number_of_study_related_instances == 0
    if first_in_study:
        mark_pending(conn, record.tenant_id, study_pk, record.source_pk)
    _record_changes(conn, record, first_in_study, released)
    return RecordResult(
        RecordOutcome.REPLACED if released else RecordOutcome.CREATED, released, study_pk=study_pk
    )


def _record_changes(
    conn: Connection, record: InstanceRecord, first_in_study: bool, replaced: str | None
) -> None:
    """The change feed entries of a stored instance, recorded at commit (they lock the
    tenant's counter, which must be the last lock: attaching to an order follows)."""
    entries = [_stored_change(record, replaced)]
    if first_in_study:
        modality = a.text(record.dataset, "Modality", 16)
        entries.insert(
            0,
            changes.NewChange(
                record.source_pk,
                changes.STUDY_FIRST_INSTANCE,
                record.study_instance_uid,
                detail={"modality": modality} if modality else None,
            ),
        )
    changes.defer_changes(conn, record.tenant_id, entries)


def _stored_change(record: InstanceRecord, replaced: str | None) -> changes.NewChange:
    """The `instance.stored` entry of a stored instance."""
    modality = a.text(record.dataset, "Modality", 16)
    detail: dict = {"sop_class_uid": record.sop_class_uid}
    if modality:
        detail["modality"] = modality
    if replaced:
        detail["replaced"] = True
    return changes.NewChange(
        record.source_pk,
        changes.INSTANCE_STORED,
        record.study_instance_uid,
        record.series_instance_uid,
        record.sop_instance_uid,
        detail,
    )


def _instance_columns(record: InstanceRecord) -> dict[str, object]:
    """The instance row's columns of the record (not its tenant, study, series, source)."""
    return {
        "sop_instance_uid": record.sop_instance_uid,
        "sop_class_uid": record.sop_class_uid,
        "transfer_syntax_uid": record.transfer_syntax_uid,
        **instance_attributes(record.dataset),
        "blob_key": record.blob_key,
        "size_bytes": record.size_bytes,
        "sha256": record.sha256,
    }


def _metadata_columns(record: InstanceRecord) -> dict[str, object]:
    """The instance_metadata row's columns of the record (not its instance key)."""
    return {
        "dicom_json": record.dicom_json,
        "frame_offsets": None if record.frames is None else orjson.dumps(record.frames),
        "pixel_data_vr": record.pixel_data_vr,
    }


def instance_attributes(ds: Dataset) -> dict[str, object]:
    """The instance row's columns that come from the data set's attributes."""
    return {
        "instance_number": a.integer(ds, "InstanceNumber"),
        "number_of_frames": a.integer(ds, "NumberOfFrames"),
        "rows": a.integer(ds, "Rows"),
        "columns": a.integer(ds, "Columns"),
        "content_date": a.date_of(ds, "ContentDate"),
        "content_time": a.time_of(ds, "ContentTime"),
        "bits_allocated": a.integer(ds, "BitsAllocated"),
        "acquisition_datetime": a.datetime_of(ds, "AcquisitionDateTime"),
    }


def record_more_of_series(
    conn: Connection,
    tenant_id: int,
    source_pk: int,
    series_instance_uid: str,
    instances: list[dict[str, object]],
    modalities: Iterable[str | None] = (),
) -> None:
    """Add instances to a series that `record_instance` has just recorded one instance of,
    in the same transaction (so the study is locked and its source visibility checked), with
    a few multi-row statements instead of several statements per instance. The caller has
    checked that none of the SOP Instance UIDs is stored (a concurrent one raises
    IntegrityError). Each item: the instance columns (sop_instance_uid, sop_class_uid,
    transfer_syntax_uid, blob_key, size_bytes, sha256, instance_attributes(...)) and
    dicom_json, frame_offsets (JSON bytes or None), pixel_data_vr. `modalities` (the
    instances' Modality, when known) join the study's ModalitiesInStudy. The change feed
    entries are the caller's (`record_more_instances` records them)."""
    if not instances:
        return
    sql = _sql(conn)
    series = conn.execute(
        sql.find_series,
        {
            "tenant_id": tenant_id,
            "series_instance_uid": series_instance_uid,
            "source_pk": source_pk,
        },
    ).one()
    study = conn.execute(sql.lock_study, {"study_pk": series.study_pk}).one()
    metadata_keys = ("dicom_json", "frame_offsets", "pixel_data_vr")
    rows = [
        {
            **{k: v for k, v in item.items() if k not in metadata_keys},
            "tenant_id": tenant_id,
            "study_pk": series.study_pk,
            "series_pk": series.id,
            "source_pk": source_pk,
        }
        for item in instances
    ]
    if conn.dialect.name == "postgresql":
        ids = list(conn.execute(sql.next_instance_keys, {"count": len(rows)}).scalars())
        for pk, row in zip(ids, rows, strict=True):
            row["id"] = pk
        conn.execute(sql.insert_instances, rows)
    else:
        key_of = {uid: pk for pk, uid in conn.execute(sql.insert_instances_returning, rows)}
        ids = [key_of[row["sop_instance_uid"]] for row in rows]
    conn.execute(
        sql.insert_metadata,
        [
            {"instance_pk": pk, **{k: item[k] for k in metadata_keys}}
            for pk, item in zip(ids, instances, strict=True)
        ],
    )
    conn.execute(sql.count_series_instances, {"series_pk": series.id, "added": len(instances)})
    sop_classes = study.sop_classes_in_study
    for item in instances:
        sop_classes = _add_value(sop_classes, str(item["sop_class_uid"]))
    modalities_in_study = study.modalities_in_study
    for modality in modalities:
        modalities_in_study = _add_value(modalities_in_study, modality)
    conn.execute(
        sql.count_study_instances,
        {
            "study_pk": series.study_pk,
            "new_series": 0,
            "added": len(instances),
            "modalities": modalities_in_study,
            "sop_classes": sop_classes,
        },
    )


def record_more_instances(conn: Connection, records: list[InstanceRecord]) -> None:
    """`record_instance` for more instances of one series (one source), right after it
    CREATED an instance of that series in this transaction (the study is locked, its
    visibility checked, the patient, study, series and source rows exist, and the study is
    not empty: no study.first_instance). The caller has checked that none of the SOP
    Instance UIDs is stored, nor repeated in `records`; one stored meanwhile raises
    IntegrityError (roll back the caller's savepoint). Rows with a few multi-row statements
    (`record_more_of_series`), then each instance's `instance.stored` at commit."""
    if not records:
        return
    first = records[0]
    assert all(
        (r.tenant_id, r.source_pk, r.study_instance_uid, r.series_instance_uid)
        == (first.tenant_id, first.source_pk, first.study_instance_uid, first.series_instance_uid)
        for r in records
    ), "records of one series and source"
    record_more_of_series(
        conn,
        first.tenant_id,
        first.source_pk,
        first.series_instance_uid,
        [{**_instance_columns(r), **_metadata_columns(r)} for r in records],
        modalities=[a.text(r.dataset, "Modality", 16) for r in records],
    )
    changes.defer_changes(conn, first.tenant_id, [_stored_change(r, None) for r in records])


def blob_in_use(conn: Connection, blob_key: str) -> bool:
    return (
        conn.execute(select(Instance.id).where(Instance.blob_key == blob_key).limit(1)).first()
        is not None
    )


def _holds_hidden_sources(conn: Connection, study_pk: int, visible: frozenset[int] | None) -> bool:
    """Does the study hold an instance of a source outside `visible`? (Only asked for
    source-locked uploaders; uses ix_instance_study_source.)"""
    if visible is None:
        return False
    return (
        conn.execute(
            select(Instance.id)
            .where(Instance.study_pk == study_pk, Instance.source_pk.not_in(list(visible)))
            .limit(1)
        ).first()
        is not None
    )


def _add_source_rows(
    conn: Connection, record: InstanceRecord, study_pk: int, series_pk: int
) -> None:
    """The uploader's source's first instance in this series (and maybe study): its values."""
    sql = _sql(conn)
    key = {"tenant_id": record.tenant_id, "source_pk": record.source_pk}
    conn.execute(
        sql.insert_series_source,
        {**key, "series_pk": series_pk, "study_pk": study_pk, **series_values(record.dataset)},
    )
    values = {
        **study_values(record.dataset),
        "issuer_of_patient_id": issuer_of_patient_id(conn, record),
    }
    conn.execute(sql.insert_study_source, {**key, "study_pk": study_pk, **values})
    keep_corrected(conn, study_pk, record.source_pk)


def issuer_of_patient_id(conn: Connection, record: InstanceRecord) -> str:
    """The instance's Issuer of Patient ID, else its source's default issuer ('' if none)."""
    return a.text(record.dataset, "IssuerOfPatientID") or _source_default_issuer(conn, record)


def _source_default_issuer(conn: Connection, record: InstanceRecord) -> str:
    found = conn.execute(_sql(conn).default_issuer, {"source_pk": record.source_pk}).scalar()
    return found or ""


def _record_other_patient_ids(conn: Connection, record: InstanceRecord, patient_pk: int) -> None:
    """The identities of the Other Patient IDs Sequence, as link candidates of the patient.
    An item without an issuer gets the source's default issuer, like the instance itself."""
    items = record.dataset.get("OtherPatientIDsSequence")
    if not items:
        return
    rows = []
    for item in items:
        other_id = a.text(item, "PatientID")
        if not other_id:
            continue
        issuer = a.text(item, "IssuerOfPatientID") or _source_default_issuer(conn, record)
        rows.append(
            {
                "tenant_id": record.tenant_id,
                "patient_pk": patient_pk,
                "source_pk": record.source_pk,
                "patient_id": other_id,
                "issuer_of_patient_id": issuer,
            }
        )
    if rows:
        conn.execute(_sql(conn).insert_other_patient_id, rows)


def _upsert_patient(conn: Connection, tenant_id: int, ds: Dataset, issuer: str) -> int:
    patient_id = a.text(ds, "PatientID") or ""
    name = a.person_name(ds, "PatientName")
    sql = _sql(conn)
    conn.execute(
        sql.insert_patient,
        {
            "tenant_id": tenant_id,
            "patient_id": patient_id,
            "issuer_of_patient_id": issuer,
            "patient_name": name,
            "patient_name_norm": a.normalize_person_name(name),
            "patient_birth_date": a.date_of(ds, "PatientBirthDate"),
            "patient_sex": a.text(ds, "PatientSex", 16),
        },
    )
    key = {"tenant_id": tenant_id, "patient_id": patient_id, "issuer_of_patient_id": issuer}
    return conn.execute(sql.find_patient, key).scalar_one()


def _upsert_study(conn: Connection, record: InstanceRecord, patient_pk: int, issuer: str) -> int:
    conn.execute(
        _sql(conn).insert_study,
        {
            "tenant_id": record.tenant_id,
            "patient_pk": patient_pk,
            "study_instance_uid": record.study_instance_uid,
            **study_values(record.dataset),
            "issuer_of_patient_id": issuer,
            "modalities_in_study": "",
            "sop_classes_in_study": "",
            "number_of_study_related_series": 0,
            "number_of_study_related_instances": 0,
        },
    )
    key = {"tenant_id": record.tenant_id, "study_instance_uid": record.study_instance_uid}
    return conn.execute(_sql(conn).lock_study_by_uid, key).scalar_one()


def _upsert_series(conn: Connection, record: InstanceRecord, study_pk: int):
    conn.execute(
        _sql(conn).insert_series,
        {
            "tenant_id": record.tenant_id,
            "study_pk": study_pk,
            "series_instance_uid": record.series_instance_uid,
            **series_values(record.dataset),
            "number_of_series_related_instances": 0,
        },
    )
    return _known_series(conn, record)


def _known_series(conn: Connection, record: InstanceRecord):
    key = {
        "tenant_id": record.tenant_id,
        "series_instance_uid": record.series_instance_uid,
        "source_pk": record.source_pk,
    }
    return conn.execute(_sql(conn).find_series, key).first()


def _add_value(joined: str, value: str | None) -> str:
    values = set(joined.split("\\")) if joined else set()
    if value:
        values.add(value)
    return "\\".join(sorted(values))


def _recompute_study_computed(conn: Connection, study_pk: int) -> None:
    """Recompute the study's counts and value lists from scratch (after a removal)."""
    modalities = {
        m
        for (m,) in conn.execute(
            select(Series.modality).where(
                Series.study_pk == study_pk, Series.number_of_series_related_instances > 0
            )
        )
        if m
    }
    sop_classes = {
        c
        for (c,) in conn.execute(
            select(Instance.sop_class_uid).where(Instance.study_pk == study_pk).distinct()
        )
    }
    series_count = conn.execute(
        select(func.count(Series.id)).where(
            Series.study_pk == study_pk, Series.number_of_series_related_instances > 0
        )
    ).scalar_one()
    instance_count = conn.execute(
        select(func.count(Instance.id)).where(Instance.study_pk == study_pk)
    ).scalar_one()
    conn.execute(
        update(Study)
        .where(Study.id == study_pk)
        .values(
            number_of_study_related_series=series_count,
            number_of_study_related_instances=instance_count,
            modalities_in_study="\\".join(sorted(modalities)),
            sop_classes_in_study="\\".join(sorted(sop_classes)),
            updated_at=func.now(),
        )
    )


def _remove_instance(conn: Connection, existing) -> None:
    conn.execute(delete(InstanceMetadata).where(InstanceMetadata.instance_pk == existing.id))
    conn.execute(delete(Instance).where(Instance.id == existing.id))
    conn.execute(
        update(Series)
        .where(Series.id == existing.series_pk)
        .values(number_of_series_related_instances=Series.number_of_series_related_instances - 1)
    )
    _drop_source_rows(conn, existing)
    _recompute_study_computed(conn, existing.study_pk)


def _drop_source_rows(conn: Connection, existing) -> None:
    """Delete the per-source rows of a source with no instance left in the series/study."""
    for table, parent, parent_pk in (
        (SeriesSource, Instance.series_pk, existing.series_pk),
        (StudySource, Instance.study_pk, existing.study_pk),
    ):
        remaining = conn.execute(
            select(Instance.id)
            .where(parent == parent_pk, Instance.source_pk == existing.source_pk)
            .limit(1)
        ).first()
        if remaining is None:
            owner = table.series_pk if table is SeriesSource else table.study_pk
            conn.execute(
                delete(table).where(owner == parent_pk, table.source_pk == existing.source_pk)
            )
