"""Upload sessions ("upload later"): instances stored durably but not yet part of the archive.

A session belongs to one tenant and one owner (the principal that opened it) and labels its
instances with one source. Its instances live in `upload_session_instance`, never in the
`instance` table, so nothing of an open session is visible to QIDO-RS, WADO-RS or DIMSE, and
it never blocks another upload of the same UIDs. Commit records them in the archive in ONE
transaction (tessera/services/upload_sessions.py). Every lookup is scoped inside SQL by
tenant and owner: a session of another user or tenant is simply not found.

Sessions a staged DIMSE peer's associations opened (`received_from` = its calling AE title,
tessera/services/listener_sessions.py) are there for review: every user of the tenant whose
scope reads and uploads to the session's source finds them, not only their owner (the peer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.models import Base, Key
from tessera.scope import Scope

OPEN = "open"
COMMITTED = "committed"
DISCARDED = "discarded"
EXPIRED = "expired"


class UploadSession(Base):
    __tablename__ = "upload_session"
    __table_args__ = (Index("ix_upload_session_owner", "tenant_id", "owner", "state"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    # The id in URLs: random, so one cannot be guessed from another.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str] = mapped_column(String(160))
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"))
    description: Mapped[str] = mapped_column(String(1024), default="")
    state: Mapped[str] = mapped_column(String(16), default=OPEN)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The calling AE title of the staged peer that sent it (None: a user opened it).
    received_from: Mapped[str | None] = mapped_column(String(16))


class UploadSessionInstance(Base):
    __tablename__ = "upload_session_instance"
    __table_args__ = (
        UniqueConstraint("session_pk", "sop_instance_uid"),
        Index("ix_upload_session_instance_blob_key", "blob_key"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    session_pk: Mapped[int] = mapped_column(ForeignKey("upload_session.id", ondelete="CASCADE"))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    blob_key: Mapped[str] = mapped_column(String(160))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Built at upload, as ingest builds them, so commit only writes rows.
    dicom_json: Mapped[bytes] = mapped_column(LargeBinary)
    frame_offsets: Mapped[bytes | None] = mapped_column(LargeBinary)
    pixel_data_vr: Mapped[str | None] = mapped_column(String(2))
    # The instance row's attribute columns (index.ingest.instance_attributes), JSON.
    index_values: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


@dataclass(frozen=True)
class SessionRow:
    pk: int
    public_id: str
    tenant_id: int
    owner: str
    source_pk: int
    description: str
    state: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    received_from: str | None = None


_SESSION_COLUMNS = (
    UploadSession.id,
    UploadSession.public_id,
    UploadSession.tenant_id,
    UploadSession.owner,
    UploadSession.source_pk,
    UploadSession.description,
    UploadSession.state,
    UploadSession.created_at,
    UploadSession.expires_at,
    UploadSession.closed_at,
    UploadSession.received_from,
)


def _row(row) -> SessionRow:
    return SessionRow(*row)


def create_session(
    conn: Connection,
    scope: Scope,
    public_id: str,
    source_pk: int,
    description: str,
    now: datetime,
    expires_at: datetime,
    received_from: str | None = None,
) -> SessionRow:
    conn.execute(
        insert(UploadSession).values(
            tenant_id=scope.tenant_id,
            public_id=public_id,
            owner=scope.principal,
            source_pk=source_pk,
            description=description,
            state=OPEN,
            created_at=now,
            expires_at=expires_at,
            received_from=received_from,
        )
    )
    found = find_session(conn, scope, public_id)
    assert found is not None
    return found


def _mine(scope: Scope):
    """The caller's own sessions, and the received (staged listener) sessions of sources the
    caller both reads and uploads to - all in the caller's tenant."""
    received: list[ColumnElement[bool]] = [UploadSession.received_from.is_not(None)]
    if scope.source_pks is not None:
        received.append(UploadSession.source_pk.in_(sorted(scope.source_pks)))
    if scope.upload_source_pks is not None:
        received.append(UploadSession.source_pk.in_(sorted(scope.upload_source_pks)))
    return (UploadSession.tenant_id == scope.tenant_id) & (
        (UploadSession.owner == scope.principal) | and_(*received)
    )


def find_session(
    conn: Connection, scope: Scope, public_id: str, lock: bool = False
) -> SessionRow | None:
    """The caller's session (tenant and owner inside the WHERE clause), None otherwise."""
    query = select(*_SESSION_COLUMNS).where(_mine(scope), UploadSession.public_id == public_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return _row(row) if row is not None else None


def list_sessions(conn: Connection, scope: Scope) -> list[SessionRow]:
    rows = conn.execute(
        select(*_SESSION_COLUMNS)
        .where(_mine(scope))
        .order_by(UploadSession.created_at.desc(), UploadSession.id.desc())
    )
    return [_row(row) for row in rows]


def set_state(conn: Connection, session_pk: int, state: str, now: datetime) -> None:
    conn.execute(
        update(UploadSession)
        .where(UploadSession.id == session_pk)
        .values(state=state, closed_at=now)
    )


def set_description(conn: Connection, session_pk: int, description: str) -> None:
    conn.execute(
        update(UploadSession).where(UploadSession.id == session_pk).values(description=description)
    )


def session_instance(conn: Connection, session_pk: int, sop_instance_uid: str):
    return conn.execute(
        select(
            UploadSessionInstance.id, UploadSessionInstance.sha256, UploadSessionInstance.blob_key
        ).where(
            UploadSessionInstance.session_pk == session_pk,
            UploadSessionInstance.sop_instance_uid == sop_instance_uid,
        )
    ).first()


def add_instance(conn: Connection, session_pk: int, values: dict) -> None:
    conn.execute(insert(UploadSessionInstance).values(session_pk=session_pk, **values))


def remove_instance(conn: Connection, instance_pk: int) -> None:
    conn.execute(delete(UploadSessionInstance).where(UploadSessionInstance.id == instance_pk))


def session_size(conn: Connection, session_pk: int) -> int:
    return conn.execute(
        select(func.coalesce(func.sum(UploadSessionInstance.size_bytes), 0)).where(
            UploadSessionInstance.session_pk == session_pk
        )
    ).scalar_one()


def session_instances(conn: Connection, session_pk: int):
    """Every instance of the session, study / series / arrival order."""
    return list(
        conn.execute(
            select(UploadSessionInstance.__table__)
            .where(UploadSessionInstance.session_pk == session_pk)
            .order_by(
                UploadSessionInstance.study_instance_uid,
                UploadSessionInstance.series_instance_uid,
                UploadSessionInstance.id,
            )
        )
    )


def session_instance_ids(conn: Connection, session_pk: int) -> list[int]:
    """The ids of `session_instances`, in the same order."""
    t = UploadSessionInstance
    return list(
        conn.execute(
            select(t.id)
            .where(t.session_pk == session_pk)
            .order_by(t.study_instance_uid, t.series_instance_uid, t.id)
        ).scalars()
    )


def series_summary(conn: Connection, session_pk: int):
    """(study, series, patient ID, patient name, instances, bytes) per series."""
    t = UploadSessionInstance
    return list(
        conn.execute(
            select(
                t.study_instance_uid,
                t.series_instance_uid,
                t.patient_id,
                t.patient_name,
                func.count(t.id),
                func.sum(t.size_bytes),
            )
            .where(t.session_pk == session_pk)
            .group_by(t.study_instance_uid, t.series_instance_uid, t.patient_id, t.patient_name)
            .order_by(t.study_instance_uid, t.series_instance_uid)
        )
    )


def remove_instances(conn: Connection, session_pk: int) -> list[str]:
    """Delete the session's instance rows; the blob keys they used."""
    keys = list(
        conn.execute(
            select(UploadSessionInstance.blob_key).where(
                UploadSessionInstance.session_pk == session_pk
            )
        ).scalars()
    )
    conn.execute(
        delete(UploadSessionInstance).where(UploadSessionInstance.session_pk == session_pk)
    )
    return keys


def expired_open_sessions(conn: Connection, now: datetime) -> list[int]:
    return list(
        conn.execute(
            select(UploadSession.id).where(
                UploadSession.state == OPEN, UploadSession.expires_at < now
            )
        ).scalars()
    )


def blob_keys_in_sessions(conn: Connection, keys: list[str]) -> set[str]:
    """The keys among `keys` that a session instance uses (the sweeper keeps them)."""
    return set(
        conn.execute(
            select(UploadSessionInstance.blob_key).where(UploadSessionInstance.blob_key.in_(keys))
        ).scalars()
    )
