"""People's e-mail notifications ("a study is ready") in the index.

A subscription belongs to one user and reads the change feed through that user's CURRENT
Scope (rebuilt at every send), so a source lock or a revoked permission applies at once.
Claiming (`claim`) is a compare-and-set on `next_attempt_at`, so one process sends a given
subscription's next batch, on SQLite and PostgreSQL alike, without holding a transaction
open while talking to the SMTP server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update

from tessera.auth import permissions
from tessera.auth.authenticate import scope_for_user
from tessera.index import accounts, changes
from tessera.index.clock import iso, utcnow
from tessera.index.errors import NotFound
from tessera.index.event_models import ChangeCounter, NotificationSubscription
from tessera.index.models import AppUser
from tessera.scope import Scope

# Study-level changes only: people get one message per study, never one per instance.
PERSON_KINDS = frozenset(
    {
        changes.STUDY_FIRST_INSTANCE,
        changes.STUDY_COMPLETE,
        changes.STUDY_UPDATED,
        changes.REPORT_SIGNED,
        changes.ORDER_STATUS_CHANGED,
    }
)
DEFAULT_KINDS = (changes.STUDY_COMPLETE,)


def _public(row) -> dict:
    return {
        "id": row.id,
        "email": row.email,
        "event_types": [k for k in row.event_types.split(",") if k],
        "failures": row.failures,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
    }


def create(conn: Connection, tenant_id: int, user_id: int, email: str, kinds: list[str]) -> dict:
    subscription_pk = conn.execute(
        insert(NotificationSubscription)
        .values(
            tenant_id=tenant_id,
            user_id=user_id,
            email=email,
            event_types=",".join(kinds),
            last_seq=changes.last_seq(conn, tenant_id),
            failures=0,
            last_error="",
        )
        .returning(NotificationSubscription.id)
    ).scalar_one()
    return get(conn, tenant_id, user_id, subscription_pk)


def list_for_user(conn: Connection, tenant_id: int, user_id: int) -> list[dict]:
    rows = conn.execute(
        select(NotificationSubscription)
        .where(
            NotificationSubscription.tenant_id == tenant_id,
            NotificationSubscription.user_id == user_id,
        )
        .order_by(NotificationSubscription.id)
    )
    return [_public(row) for row in rows]


def get(conn: Connection, tenant_id: int, user_id: int, subscription_pk: int) -> dict:
    row = conn.execute(
        select(NotificationSubscription).where(
            NotificationSubscription.tenant_id == tenant_id,
            NotificationSubscription.user_id == user_id,
            NotificationSubscription.id == subscription_pk,
        )
    ).first()
    if row is None:
        raise NotFound(f"no notification {subscription_pk}")
    return _public(row)


def remove(conn: Connection, tenant_id: int, user_id: int, subscription_pk: int) -> None:
    get(conn, tenant_id, user_id, subscription_pk)
    conn.execute(
        delete(NotificationSubscription).where(NotificationSubscription.id == subscription_pk)
    )


# --- sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    subscription_pk: int
    email: str
    username: str
    start_seq: int
    failures: int
    changes: list[changes.Change]
    last_read: int  # the cursor after this batch (hidden/unwanted changes skipped too)


def due(conn: Connection) -> list[int]:
    now = utcnow()
    return list(
        conn.execute(
            select(NotificationSubscription.id)
            .join(ChangeCounter, ChangeCounter.tenant_id == NotificationSubscription.tenant_id)
            .where(
                NotificationSubscription.last_seq < ChangeCounter.last_seq,
                or_(
                    NotificationSubscription.next_attempt_at.is_(None),
                    NotificationSubscription.next_attempt_at <= now,
                ),
            )
        ).scalars()
    )


def claim(conn: Connection, subscription_pk: int, lease_seconds: float) -> bool:
    now = utcnow()
    return (
        conn.execute(
            update(NotificationSubscription)
            .where(
                NotificationSubscription.id == subscription_pk,
                or_(
                    NotificationSubscription.next_attempt_at.is_(None),
                    NotificationSubscription.next_attempt_at <= now,
                ),
            )
            .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
        ).rowcount
        == 1
    )


def next_batch(conn: Connection, subscription_pk: int, limit: int = 50) -> Batch | None:
    """The changes the subscriber may see and wants, after the cursor, one per study and
    kind. None when the user is gone or disabled (the subscription stays, sends nothing)."""
    row = conn.execute(
        select(NotificationSubscription, AppUser.username, AppUser.disabled)
        .join(AppUser, AppUser.id == NotificationSubscription.user_id)
        .where(NotificationSubscription.id == subscription_pk)
    ).first()
    if row is None or row.disabled:
        return None
    user = accounts.get_user(conn, row.tenant_id, row.username)
    if user is None:
        return None
    scope: Scope = scope_for_user(conn, user, row.username)
    kinds = [k for k in row.event_types.split(",") if k]
    last_read = changes.last_seq(conn, row.tenant_id)
    found: list[changes.Change] = []
    if scope.can(permissions.READ):
        found = changes.read_changes(conn, scope, row.last_seq, limit, kinds)
        if len(found) == limit:
            last_read = found[-1].seq
        elif found:
            last_read = max(last_read, found[-1].seq)
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for change in found:
        key = (change.kind, change.study_instance_uid)
        if key not in seen:
            seen.add(key)
            unique.append(change)
    return Batch(row.id, row.email, row.username, row.last_seq, row.failures, unique, last_read)


def advance(conn: Connection, subscription_pk: int, to_seq: int) -> None:
    conn.execute(
        update(NotificationSubscription)
        .where(NotificationSubscription.id == subscription_pk)
        .values(last_seq=to_seq, next_attempt_at=None, failures=0, last_error="")
    )


def failed(
    conn: Connection, subscription_pk: int, sent_up_to: int, error: str, retry_at: datetime
) -> None:
    conn.execute(
        update(NotificationSubscription)
        .where(NotificationSubscription.id == subscription_pk)
        .values(
            last_seq=sent_up_to,
            next_attempt_at=retry_at,
            failures=NotificationSubscription.failures + 1,
            last_error=error[:512],
        )
    )
