"""UPS subscriptions (PS3.4 CC.2.3, PS3.18 §11.10-11.12): which Application Entities are
told about which workitems (migration 0015_upssub_ups_subscriptions).

One row per (tenant, AE title, kind, workitem UID):

- `workitem`: the AE's subscription to one workitem (`subscribed` true), or its opt-out of
  one workitem while a Worklist subscription covers it (`subscribed` false: Unsubscribe of
  that workitem under a Global Subscription).
- `worklist`: the Global Subscription (well-known UID 1.2.840.10008.5.1.4.34.5): every
  workitem, existing and new.
- `filtered`: the Filtered Global Subscription (1.2.840.10008.5.1.4.34.5.1): the workitems
  matching `filter` (a Search Workitems query string).

A suspended global subscription (`suspended_at`) no longer takes in workitems created after
it was suspended; the others stay subscribed (PS3.18 §11.12). Rows belong to a tenant and
name no source: what an AE is told is limited, at delivery, by the Scope of whoever opens
its notification channel (`tessera.services.ups_events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Connection,
    DateTime,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.clock import utcnow as utc_now
from tessera.index.models import Base, Key

WORKITEM = "workitem"
WORKLIST = "worklist"
FILTERED = "filtered"
KINDS = (WORKITEM, WORKLIST, FILTERED)


class UpsSubscription(Base):
    __tablename__ = "ups_subscription"
    __table_args__ = (UniqueConstraint("tenant_id", "ae_title", "kind", "workitem_uid"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    ae_title: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    # The workitem of a `workitem` row; '' for the global kinds.
    workitem_uid: Mapped[str] = mapped_column(String(64), default="")
    # The matching keys of a `filtered` row, as a query string.
    filter: Mapped[str] = mapped_column(Text, default="")
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    deletion_lock: Mapped[bool] = mapped_column(Boolean, default=False)
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    principal: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


TABLE = UpsSubscription.__table__


@dataclass(frozen=True)
class Subscription:
    ae_title: str
    kind: str
    workitem_uid: str
    filter: str
    subscribed: bool
    deletion_lock: bool
    suspended_at: datetime | None


_COLUMNS = (
    TABLE.c.ae_title,
    TABLE.c.kind,
    TABLE.c.workitem_uid,
    TABLE.c.filter,
    TABLE.c.subscribed,
    TABLE.c.deletion_lock,
    TABLE.c.suspended_at,
)


def subscriptions_of(conn: Connection, tenant_id: int, ae_title: str) -> list[Subscription]:
    """Every row of the AE in the tenant."""
    rows = conn.execute(
        select(*_COLUMNS).where(TABLE.c.tenant_id == tenant_id, TABLE.c.ae_title == ae_title)
    )
    return [Subscription(**row._mapping) for row in rows]


def subscribers(conn: Connection, tenant_id: int) -> dict[str, list[Subscription]]:
    """Every AE of the tenant with its rows (to tell whether a workitem has a subscriber)."""
    found: dict[str, list[Subscription]] = {}
    rows = conn.execute(select(*_COLUMNS).where(TABLE.c.tenant_id == tenant_id))
    for row in rows:
        found.setdefault(row.ae_title, []).append(Subscription(**row._mapping))
    return found


def _where(tenant_id: int, ae_title: str, kind: str, workitem_uid: str = ""):
    return (
        (TABLE.c.tenant_id == tenant_id)
        & (TABLE.c.ae_title == ae_title)
        & (TABLE.c.kind == kind)
        & (TABLE.c.workitem_uid == workitem_uid)
    )


def put_subscription(
    conn: Connection,
    tenant_id: int,
    ae_title: str,
    kind: str,
    *,
    workitem_uid: str = "",
    filter: str = "",
    deletion_lock: bool = False,
    principal: str = "",
) -> None:
    """Create or renew a subscription (a renewed global one is no longer suspended; a global
    one takes in every existing workitem again, so the AE's opt-outs go)."""
    conn.execute(delete(TABLE).where(_where(tenant_id, ae_title, kind, workitem_uid)))
    if kind != WORKITEM:
        conn.execute(
            delete(TABLE).where(
                TABLE.c.tenant_id == tenant_id,
                TABLE.c.ae_title == ae_title,
                TABLE.c.kind == WORKITEM,
                TABLE.c.subscribed.is_(False),
            )
        )
    conn.execute(
        TABLE.insert().values(
            tenant_id=tenant_id,
            ae_title=ae_title,
            kind=kind,
            workitem_uid=workitem_uid,
            filter=filter,
            subscribed=True,
            deletion_lock=deletion_lock,
            principal=principal[:160],
        )
    )


def opt_out(conn: Connection, tenant_id: int, ae_title: str, workitem_uid: str) -> None:
    """The AE no longer hears of this workitem, whatever global subscription it holds."""
    conn.execute(delete(TABLE).where(_where(tenant_id, ae_title, WORKITEM, workitem_uid)))
    conn.execute(
        TABLE.insert().values(
            tenant_id=tenant_id,
            ae_title=ae_title,
            kind=WORKITEM,
            workitem_uid=workitem_uid,
            subscribed=False,
        )
    )


def drop_workitem_subscription(
    conn: Connection, tenant_id: int, ae_title: str, workitem_uid: str
) -> bool:
    return bool(
        conn.execute(
            delete(TABLE).where(_where(tenant_id, ae_title, WORKITEM, workitem_uid))
        ).rowcount
    )


def drop_global_subscription(conn: Connection, tenant_id: int, ae_title: str, kind: str) -> bool:
    """Unsubscribe from a global subscription: it goes, and with it every workitem
    subscription of the AE (PS3.4 CC.2.3.3). False when the AE held no such subscription."""
    dropped = conn.execute(delete(TABLE).where(_where(tenant_id, ae_title, kind))).rowcount
    if dropped:
        conn.execute(
            delete(TABLE).where(
                TABLE.c.tenant_id == tenant_id,
                TABLE.c.ae_title == ae_title,
                TABLE.c.kind == WORKITEM,
            )
        )
    return bool(dropped)


def suspend_global_subscription(conn: Connection, tenant_id: int, ae_title: str, kind: str) -> bool:
    """Stop taking in new workitems (existing ones stay subscribed). False: no such
    subscription."""
    exists = conn.execute(select(TABLE.c.id).where(_where(tenant_id, ae_title, kind))).first()
    if exists is None:
        return False
    conn.execute(
        update(TABLE)
        .where(_where(tenant_id, ae_title, kind), TABLE.c.suspended_at.is_(None))
        .values(suspended_at=utc_now())
    )
    return True
