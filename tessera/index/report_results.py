"""The outbox of signed reports to send as HL7 ORU^R01 (results out): one row per signed
version, retried until the receiver acknowledges it. Rows are claimed with a lease
(`next_attempt_at` moved forward only if nobody else moved it), so several server processes
over one PostgreSQL index never send a row twice at the same time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.clock import utcnow as now
from tessera.index.models import Base, Key

PENDING = "pending"
ACKNOWLEDGED = "acknowledged"


class ReportResultMessage(Base):
    __tablename__ = "report_result_message"
    __table_args__ = (Index("ix_report_result_due", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    report_id: Mapped[int] = mapped_column(ForeignKey("report.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    endpoint: Mapped[str] = mapped_column(String(255))
    control_id: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Outgoing:
    id: int
    endpoint: str
    control_id: str
    message: bytes
    attempts: int
    next_attempt_at: datetime


def enqueue(
    conn: Connection,
    tenant_id: int,
    report_id: int,
    version: int,
    endpoint: str,
    control_id: str,
    message: bytes,
) -> None:
    conn.execute(
        ReportResultMessage.__table__.insert().values(
            tenant_id=tenant_id,
            report_id=report_id,
            version=version,
            endpoint=endpoint,
            control_id=control_id,
            message=message.decode("utf-8"),
            state=PENDING,
            attempts=0,
            next_attempt_at=now(),
            last_error="",
        )
    )


def due(conn: Connection, limit: int = 20) -> list[Outgoing]:
    rows = conn.execute(
        select(
            ReportResultMessage.id,
            ReportResultMessage.endpoint,
            ReportResultMessage.control_id,
            ReportResultMessage.message,
            ReportResultMessage.attempts,
            ReportResultMessage.next_attempt_at,
        )
        .where(
            ReportResultMessage.state == PENDING,
            ReportResultMessage.next_attempt_at <= now(),
        )
        .order_by(ReportResultMessage.next_attempt_at)
        .limit(limit)
    )
    return [
        Outgoing(r.id, r.endpoint, r.control_id, r.message.encode(), r.attempts, r.next_attempt_at)
        for r in rows
    ]


def claim(conn: Connection, outgoing: Outgoing, lease: timedelta) -> bool:
    """Take the row for one attempt (False: another process took it first)."""
    return (
        conn.execute(
            ReportResultMessage.__table__.update()
            .where(
                ReportResultMessage.id == outgoing.id,
                ReportResultMessage.state == PENDING,
                ReportResultMessage.next_attempt_at == outgoing.next_attempt_at,
            )
            .values(next_attempt_at=now() + lease)
        ).rowcount
        == 1
    )


def acknowledged(conn: Connection, message_id: int) -> None:
    conn.execute(
        ReportResultMessage.__table__.update()
        .where(ReportResultMessage.id == message_id)
        .values(
            state=ACKNOWLEDGED,
            attempts=ReportResultMessage.attempts + 1,
            acknowledged_at=now(),
            last_error="",
        )
    )


def failed(conn: Connection, message_id: int, error: str, retry_in: timedelta) -> None:
    conn.execute(
        ReportResultMessage.__table__.update()
        .where(ReportResultMessage.id == message_id)
        .values(
            attempts=ReportResultMessage.attempts + 1,
            next_attempt_at=now() + retry_in,
            last_error=error[:2000],
        )
    )


def state_of(conn: Connection, report_id: int, version: int) -> tuple[str, int, str] | None:
    """(state, attempts, last error) of one signed version's message, None if none."""
    row = conn.execute(
        select(
            ReportResultMessage.state, ReportResultMessage.attempts, ReportResultMessage.last_error
        ).where(ReportResultMessage.report_id == report_id, ReportResultMessage.version == version)
    ).first()
    return None if row is None else (row.state, row.attempts, row.last_error)
