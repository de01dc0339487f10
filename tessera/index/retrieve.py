"""Scoped instance resolution for retrieval (WADO-RS, WADO-URI, C-MOVE, C-GET).

Every function applies the caller's Scope INSIDE the SQL (``instance.tenant_id = ...`` and,
when ``scope.source_pks`` is not None, ``instance.source_pk IN (...)``): an instance outside
the scope is simply not returned, exactly like one that does not exist (the facades answer
404 / a DIMSE "no match"). Nothing is filtered after fetching.

Interface (all take an open SQLAlchemy Connection, e.g. ``archive.database.read()``):

``resolve_instances(conn, scope, study_uid, series_uid=None, sop_instance_uid=None, *,
with_frames=False, with_metadata=False) -> list[RetrievedInstance]``
    The instances of a study, of one series of it, or one instance, in series order
    (SeriesNumber, then arrival) and InstanceNumber order. An empty list means 404.

``resolve_instance(conn, scope, study_uid, series_uid, sop_instance_uid, *,
with_frames=True, with_metadata=False) -> RetrievedInstance | None``
    One instance by its full path (study / series / instance must all match).

``resolve_uid_lists(conn, scope, study_uids=(), series_uids=(), sop_instance_uids=(), *,
with_frames=False, with_metadata=False) -> list[RetrievedInstance]``
    For C-MOVE / C-GET identifiers, whose UIDs are lists: the instances matching every
    non-empty list (lists are ANDed; an empty list does not constrain). At least one list
    must be non-empty (ValueError otherwise).

``metadata_batches(conn, scope, instance_pks, batch_size=500) -> Iterator[list[bytes]]``
    The pre-built DICOM JSON (UTF-8 bytes, BulkDataURIs relative to the tenant's DICOMweb
    root) of the given instances, in the order given, a batch at a time, so a
    2,000-instance study is never loaded whole.

``RetrievedInstance`` carries: ``instance_pk``, the four UIDs, ``sop_class_uid``,
``transfer_syntax_uid``, ``blob_key`` (read it through ``archive.blob_store``),
``size_bytes``, ``sha256``, ``number_of_frames`` (None when the object has no such
attribute), ``rows``, ``columns``, ``created_at``, ``coercion`` (the patient attributes to send it with after an identity
change, tessera.index.coercion; None when the study was never changed), and when asked ``frames`` (a list, per
frame, of (file offset, length) fragments; None when frames cannot be addressed by offset or
there is no Pixel Data), ``pixel_data_vr`` and ``dicom_json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import orjson
from sqlalchemy import Connection, Select, bindparam, select

from tessera.index.coercion import Coercion, for_source, parse
from tessera.index.identity_models import StudyCoercion
from tessera.index.models import Instance, InstanceMetadata, Series, Study
from tessera.scope import Scope
from tessera.storage.frames import FrameIndex

# Keep IN lists well under every backend's bound-parameter limit.
_MAX_IN = 500


@dataclass(frozen=True)
class RetrievedInstance:
    instance_pk: int
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int
    sha256: str
    number_of_frames: int | None
    rows: int | None
    columns: int | None
    created_at: datetime | None
    frames: FrameIndex | None = None
    pixel_data_vr: str | None = None
    dicom_json: bytes | None = None
    coercion: Coercion | None = None

    @property
    def frame_count(self) -> int:
        """Frames addressable in the stored object (1 for a single-frame image)."""
        if self.frames is not None:
            return len(self.frames)
        return max(self.number_of_frames or 1, 1)


def _scoped(query: Select, scope: Scope) -> Select:
    query = query.where(Instance.tenant_id == scope.tenant_id)
    if scope.source_pks is not None:
        # An empty set sees nothing: IN () is rendered as a false expression by SQLAlchemy.
        query = query.where(Instance.source_pk.in_(sorted(scope.source_pks)))
    return query


def _base_query(with_frames: bool, with_metadata: bool) -> Select:
    columns = [
        Instance.id,
        Study.study_instance_uid,
        Series.series_instance_uid,
        Instance.sop_instance_uid,
        Instance.sop_class_uid,
        Instance.transfer_syntax_uid,
        Instance.blob_key,
        Instance.size_bytes,
        Instance.sha256,
        Instance.number_of_frames,
        Instance.rows,
        Instance.columns,
        Instance.created_at,
        StudyCoercion.attributes.label("coercion"),
        Instance.source_pk,
    ]
    if with_frames:
        columns += [InstanceMetadata.frame_offsets, InstanceMetadata.pixel_data_vr]
    if with_metadata:
        columns.append(InstanceMetadata.dicom_json)
    query = (
        select(*columns)
        .select_from(Instance)
        .join(Series, Series.id == Instance.series_pk)
        .join(Study, Study.id == Instance.study_pk)
        .outerjoin(StudyCoercion, StudyCoercion.study_pk == Instance.study_pk)
    )
    if with_frames or with_metadata:
        query = query.outerjoin(InstanceMetadata, InstanceMetadata.instance_pk == Instance.id)
    return query


def _ordered(query: Select) -> Select:
    return query.order_by(
        Series.series_number.is_(None),
        Series.series_number,
        Series.id,
        Instance.instance_number.is_(None),
        Instance.instance_number,
        Instance.id,
    )


def _row_to_instance(row, with_frames: bool, with_metadata: bool) -> RetrievedInstance:
    frames = None
    vr = None
    if with_frames:
        raw = row.frame_offsets
        if raw is not None:
            frames = [[(int(o), int(n)) for o, n in frame] for frame in orjson.loads(raw)]
        vr = row.pixel_data_vr
    return RetrievedInstance(
        instance_pk=row.id,
        study_instance_uid=row.study_instance_uid,
        series_instance_uid=row.series_instance_uid,
        sop_instance_uid=row.sop_instance_uid,
        sop_class_uid=row.sop_class_uid,
        transfer_syntax_uid=row.transfer_syntax_uid,
        blob_key=row.blob_key,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        number_of_frames=row.number_of_frames,
        rows=row.rows,
        columns=row.columns,
        created_at=row.created_at,
        frames=frames,
        pixel_data_vr=vr,
        dicom_json=bytes(row.dicom_json) if with_metadata and row.dicom_json is not None else None,
        coercion=for_source(parse(row.coercion), row.source_pk),
    )


@lru_cache(maxsize=64)
def _level_statement(
    has_series: bool,
    has_instance: bool,
    source_locked: bool,
    with_frames: bool,
    with_metadata: bool,
) -> Select:
    """The resolution query for one shape of request, built once with bound parameters
    (building SQLAlchemy expressions costs more than running the query on the hot path)."""
    query = _base_query(with_frames, with_metadata).where(
        Study.study_instance_uid == bindparam("study_uid"),
        Study.tenant_id == bindparam("tenant_id"),
        Instance.tenant_id == bindparam("tenant_id"),
    )
    if has_series:
        query = query.where(Series.series_instance_uid == bindparam("series_uid"))
    if has_instance:
        query = query.where(Instance.sop_instance_uid == bindparam("sop_instance_uid"))
    if source_locked:
        query = query.where(Instance.source_pk.in_(bindparam("source_pks", expanding=True)))
    return _ordered(query)


def resolve_instances(
    conn: Connection,
    scope: Scope,
    study_uid: str,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    *,
    with_frames: bool = False,
    with_metadata: bool = False,
) -> list[RetrievedInstance]:
    """Instances of a study / series / one instance visible in `scope` (empty: 404)."""
    if scope.source_pks is not None and not scope.source_pks:
        return []  # locked to no source at all: sees nothing
    statement = _level_statement(
        series_uid is not None,
        sop_instance_uid is not None,
        scope.source_pks is not None,
        with_frames,
        with_metadata,
    )
    params: dict[str, object] = {"study_uid": study_uid, "tenant_id": scope.tenant_id}
    if series_uid is not None:
        params["series_uid"] = series_uid
    if sop_instance_uid is not None:
        params["sop_instance_uid"] = sop_instance_uid
    if scope.source_pks is not None:
        params["source_pks"] = sorted(scope.source_pks)
    return [
        _row_to_instance(row, with_frames, with_metadata) for row in conn.execute(statement, params)
    ]


def resolve_instance(
    conn: Connection,
    scope: Scope,
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    *,
    with_frames: bool = True,
    with_metadata: bool = False,
) -> RetrievedInstance | None:
    """One instance by study / series / SOP Instance UID, or None (404)."""
    found = resolve_instances(
        conn,
        scope,
        study_uid,
        series_uid,
        sop_instance_uid,
        with_frames=with_frames,
        with_metadata=with_metadata,
    )
    return found[0] if found else None


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def resolve_uid_lists(
    conn: Connection,
    scope: Scope,
    study_uids: Iterable[str] = (),
    series_uids: Iterable[str] = (),
    sop_instance_uids: Iterable[str] = (),
    *,
    with_frames: bool = False,
    with_metadata: bool = False,
) -> list[RetrievedInstance]:
    """Instances matching UID lists (C-MOVE / C-GET identifiers), scoped, in series order."""
    studies = sorted(set(study_uids))
    series = sorted(set(series_uids))
    sops = sorted(set(sop_instance_uids))
    if not (studies or series or sops):
        raise ValueError("at least one of the study, series or SOP instance UID lists is needed")
    # The longest list is split into chunks (each query stays under parameter limits); the
    # others are small in practice (a C-MOVE names one study and maybe a few series).
    lists = {"study": studies, "series": series, "sop": sops}
    longest = max(lists, key=lambda name: len(lists[name]))
    columns = {
        "study": Study.study_instance_uid,
        "series": Series.series_instance_uid,
        "sop": Instance.sop_instance_uid,
    }
    found: dict[int, RetrievedInstance] = {}
    for chunk in _chunks(lists[longest], _MAX_IN):
        query = _base_query(with_frames, with_metadata).where(Study.tenant_id == scope.tenant_id)
        for name, values in lists.items():
            if not values:
                continue
            query = query.where(columns[name].in_(list(chunk) if name == longest else values))
        for row in conn.execute(_ordered(_scoped(query, scope))):
            found[row.id] = _row_to_instance(row, with_frames, with_metadata)
    if len(lists[longest]) <= _MAX_IN:
        return list(found.values())
    # Several chunks: restore one global order.
    ordered = _ordered(
        _scoped(
            select(Instance.id)
            .select_from(Instance)
            .join(Series, Series.id == Instance.series_pk)
            .where(Instance.id.in_(list(found))),
            scope,
        )
    )
    order = {pk: index for index, pk in enumerate(conn.execute(ordered).scalars())}
    return sorted(found.values(), key=lambda item: order.get(item.instance_pk, 0))


def metadata_batches(
    conn: Connection, scope: Scope, instance_pks: Sequence[int], batch_size: int = 500
) -> Iterator[list[bytes]]:
    """Stored DICOM JSON of `instance_pks` (in that order), `batch_size` at a time."""
    batch_size = max(1, min(batch_size, _MAX_IN))
    for start in range(0, len(instance_pks), batch_size):
        wanted = list(instance_pks[start : start + batch_size])
        query = _scoped(
            select(Instance.id, InstanceMetadata.dicom_json)
            .select_from(Instance)
            .join(InstanceMetadata, InstanceMetadata.instance_pk == Instance.id)
            .where(Instance.id.in_(wanted)),
            scope,
        )
        by_pk = {row.id: bytes(row.dicom_json) for row in conn.execute(query)}
        yield [by_pk[pk] for pk in wanted if pk in by_pk]


def metadata_by_pk(conn: Connection, scope: Scope, instance_pks: Sequence[int]) -> dict[int, bytes]:
    """Stored DICOM JSON of `instance_pks` (at most 500) by instance key (visible ones)."""
    query = _scoped(
        select(Instance.id, InstanceMetadata.dicom_json)
        .select_from(Instance)
        .join(InstanceMetadata, InstanceMetadata.instance_pk == Instance.id)
        .where(Instance.id.in_(list(instance_pks[:_MAX_IN]))),
        scope,
    )
    return {row.id: bytes(row.dicom_json) for row in conn.execute(query)}
