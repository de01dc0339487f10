"""The change feed: a transactional outbox of what happened in a tenant's archive.

`record_change` is called INSIDE the transaction that makes the change, so a change is in the
feed exactly when it committed. Each tenant's feed is numbered 1, 2, 3, ... without gaps and in
commit order, which lets a reader resume from its last sequence number and never miss or
reorder an event.

How the sequence is kept gapless and in commit order: a per-tenant counter row
(`change_counter`) is incremented with UPDATE .. RETURNING in the same transaction. The row
lock it takes is held until commit or rollback, so a second writer of the same tenant waits
for the first to finish before it gets the next number: numbers are handed out in commit
order, and a rolled-back transaction gives its number back (its UPDATE is undone). A
database sequence would not do: it hands numbers out in start order, never returns them on
rollback, and a reader could see seq 8 committed while seq 7 is still in flight, then
resume after 8 and miss 7 for good. The cost is that a tenant's writers serialize for the
tail of their transactions; `record_change` is therefore called LAST, after every other
row lock the transaction takes (which also rules out lock-order deadlocks). On SQLite,
BEGIN IMMEDIATE already serializes writers and the same statements apply.

Visibility: a change carries the source of the data it is about. A source-locked caller
sees only changes of its sources; a change with no source (source_pk None) is seen only by
callers that see every source of the tenant. All of this is applied in SQL (`read_changes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tessera.index.database import before_commit
from tessera.index.event_models import ChangeCounter, ChangeEvent
from tessera.index.models import Source
from tessera.scope import Scope

# Change kinds (the `type` of a webhook message). Other workflow modules add theirs here.
INSTANCE_STORED = "instance.stored"
STUDY_FIRST_INSTANCE = "study.first_instance"
STUDY_COMPLETE = "study.complete"
STUDY_UPDATED = "study.updated"
STUDY_DELETED = "study.deleted"
ORDER_STATUS_CHANGED = "order.status_changed"
REPORT_SIGNED = "report.signed"
UPLOAD_SESSION_COMMITTED = "upload_session.committed"
PATIENT_UPDATED = "patient.updated"
PATIENT_MERGED = "patient.merged"
# UPS-RS (tessera/services/ups_events.py): an AE subscribed (its initial state reports are
# due), a performer is asked to cancel a workitem IN PROGRESS, its performer reports
# progress, and a station or human performer is assigned to it.
WORKITEM_SUBSCRIBED = "workitem.subscribed"
WORKITEM_CANCEL_REQUESTED = "workitem.cancel_requested"
WORKITEM_PROGRESS = "workitem.progress"
WORKITEM_ASSIGNED = "workitem.assigned"
KINDS = frozenset(
    {
        INSTANCE_STORED,
        STUDY_FIRST_INSTANCE,
        STUDY_COMPLETE,
        STUDY_UPDATED,
        STUDY_DELETED,
        ORDER_STATUS_CHANGED,
        REPORT_SIGNED,
        UPLOAD_SESSION_COMMITTED,
        PATIENT_UPDATED,
        PATIENT_MERGED,
        WORKITEM_SUBSCRIBED,
        WORKITEM_CANCEL_REQUESTED,
        WORKITEM_PROGRESS,
        WORKITEM_ASSIGNED,
    }
)

_NEXT_SEQ = (
    update(ChangeCounter)
    .where(ChangeCounter.tenant_id == bindparam("counter_tenant"))
    .values(last_seq=ChangeCounter.last_seq + 1)
    .returning(ChangeCounter.last_seq)
)
_ADVANCE_SEQ = (
    update(ChangeCounter)
    .where(ChangeCounter.tenant_id == bindparam("counter_tenant"))
    .values(last_seq=ChangeCounter.last_seq + bindparam("step"))
    .returning(ChangeCounter.last_seq)
)
_INSERT_EVENT = ChangeEvent.__table__.insert()
_COLUMNS = (
    ChangeEvent.seq,
    ChangeEvent.kind,
    ChangeEvent.source_pk,
    ChangeEvent.study_instance_uid,
    ChangeEvent.series_instance_uid,
    ChangeEvent.sop_instance_uid,
    ChangeEvent.detail,
    ChangeEvent.created_at,
)


def record_change(
    conn: Connection,
    tenant_id: int,
    source_pk: int | None,
    kind: str,
    study_instance_uid: str | None = None,
    *,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    detail: dict | None = None,
) -> int:
    """Append a change to the tenant's feed; returns its sequence number.

    Call it in the transaction that makes the change (the caller owns it, opened with
    `Database.write()`), as the LAST statement before commit. `source_pk` is the source of
    the data the change is about (None: bound to no source, shown only to callers who see
    every source). `detail` is a small JSON-able dict (e.g. {"modality": "CT"},
    {"order_status": "COMPLETED"}); webhook filters read `modality` and `order_status`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    seq = conn.execute(_NEXT_SEQ, {"counter_tenant": tenant_id}).scalar()
    if seq is None:
        _create_counter(conn, tenant_id)
        seq = conn.execute(_NEXT_SEQ, {"counter_tenant": tenant_id}).scalar_one()
    conn.execute(
        _INSERT_EVENT,
        {
            "tenant_id": tenant_id,
            "seq": seq,
            "kind": kind,
            "source_pk": source_pk,
            "study_instance_uid": study_instance_uid,
            "series_instance_uid": series_instance_uid,
            "sop_instance_uid": sop_instance_uid,
            "detail": orjson.dumps(detail) if detail else None,
        },
    )
    return seq


def defer_change(
    conn: Connection,
    tenant_id: int,
    source_pk: int | None,
    kind: str,
    study_instance_uid: str | None = None,
    *,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    detail: dict | None = None,
) -> None:
    """`record_change` at the end of the current transaction (at COMMIT, after every other
    statement; nothing on rollback). Use it wherever more row locks may follow in the same
    transaction (ingest, order transitions): the tenant's counter lock is then always the
    last lock taken, so two transactions can never wait on each other's locks through it."""
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")

    def record(connection: Connection) -> None:
        record_change(
            connection,
            tenant_id,
            source_pk,
            kind,
            study_instance_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
            detail=detail,
        )

    before_commit(conn, record)


@dataclass(frozen=True)
class NewChange:
    """One change for `defer_changes` (the arguments of `record_change`)."""

    source_pk: int | None
    kind: str
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    detail: dict | None = None


def defer_changes(conn: Connection, tenant_id: int, entries: list[NewChange]) -> None:
    """Many changes at commit with two statements: the counter moves by len(entries) once
    and the rows go in as one multi-row INSERT (an upload session's instances)."""
    if not entries:
        return
    unknown = {entry.kind for entry in entries} - KINDS
    if unknown:
        raise ValueError(f"unknown change kind {sorted(unknown)[0]!r}")

    def record(connection: Connection) -> None:
        step = {"counter_tenant": tenant_id, "step": len(entries)}
        last = connection.execute(_ADVANCE_SEQ, step).scalar()
        if last is None:
            _create_counter(connection, tenant_id)
            last = connection.execute(_ADVANCE_SEQ, step).scalar_one()
        first = last - len(entries) + 1
        connection.execute(
            _INSERT_EVENT,
            [
                {
                    "tenant_id": tenant_id,
                    "seq": first + offset,
                    "kind": entry.kind,
                    "source_pk": entry.source_pk,
                    "study_instance_uid": entry.study_instance_uid,
                    "series_instance_uid": entry.series_instance_uid,
                    "sop_instance_uid": entry.sop_instance_uid,
                    "detail": orjson.dumps(entry.detail) if entry.detail else None,
                }
                for offset, entry in enumerate(entries)
            ],
        )

    before_commit(conn, record)


def _create_counter(conn: Connection, tenant_id: int) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(ChangeCounter)
        .values(tenant_id=tenant_id, last_seq=0)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )


@dataclass(frozen=True)
class Change:
    seq: int
    kind: str
    source_pk: int | None
    source: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    detail: dict
    created_at: datetime

    def public(self) -> dict:
        return {
            "seq": self.seq,
            "type": self.kind,
            "time": self.created_at.isoformat() if self.created_at else None,
            "source": self.source,
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "detail": self.detail,
        }


def last_seq(conn: Connection, tenant_id: int) -> int:
    """The newest committed sequence number of the tenant (0: no change yet)."""
    value = conn.execute(
        select(ChangeCounter.last_seq).where(ChangeCounter.tenant_id == tenant_id)
    ).scalar()
    return value or 0


def last_seqs(conn: Connection) -> dict[int, int]:
    """Every tenant's newest sequence number (what the long-poll watcher compares)."""
    return dict(conn.execute(select(ChangeCounter.tenant_id, ChangeCounter.last_seq)).all())


def visible_to(scope: Scope):
    """The WHERE clause limiting change_event rows to what `scope` may see."""
    clause = ChangeEvent.tenant_id == scope.tenant_id
    if scope.source_pks is not None:
        clause = clause & ChangeEvent.source_pk.in_(sorted(scope.source_pks))
    return clause


def read_changes(
    conn: Connection,
    scope: Scope,
    after: int,
    limit: int,
    kinds: Iterable[str] | None = None,
) -> list[Change]:
    """Changes after `after` that `scope` may see, oldest first, at most `limit`."""
    query = (
        select(*_COLUMNS, Source.name.label("source_name"))
        .outerjoin(Source, Source.id == ChangeEvent.source_pk)
        .where(visible_to(scope), ChangeEvent.seq > after)
        .order_by(ChangeEvent.seq)
        .limit(limit)
    )
    if kinds:
        query = query.where(ChangeEvent.kind.in_(sorted(kinds)))
    return [_change(row) for row in conn.execute(query)]


def read_all_changes(
    conn: Connection,
    tenant_id: int,
    after: int,
    limit: int,
    kinds: Iterable[str] | None = None,
) -> list[Change]:
    """Every change of the tenant after `after` (for the dispatchers, which apply their own
    subscription's source filter), of `kinds` when given."""
    query = (
        select(*_COLUMNS, Source.name.label("source_name"))
        .outerjoin(Source, Source.id == ChangeEvent.source_pk)
        .where(ChangeEvent.tenant_id == tenant_id, ChangeEvent.seq > after)
        .order_by(ChangeEvent.seq)
        .limit(limit)
    )
    if kinds:
        query = query.where(ChangeEvent.kind.in_(sorted(kinds)))
    return [_change(row) for row in conn.execute(query)]


def _change(event) -> Change:
    return Change(
        seq=event.seq,
        kind=event.kind,
        source_pk=event.source_pk,
        source=event.source_name,
        study_instance_uid=event.study_instance_uid,
        series_instance_uid=event.series_instance_uid,
        sop_instance_uid=event.sop_instance_uid,
        detail=orjson.loads(event.detail) if event.detail else {},
        created_at=event.created_at,
    )
