"""What the delivery tables (webhook_delivery, route_delivery) share: claiming due rows under a
lease, the source-lock clause of the subscription-like tables, and dispatching the change feed
to every subscription or rule that is behind it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Connection, Table, exists, select, update

from tessera.index.clock import utcnow
from tessera.index.database import Database
from tessera.index.models import Source


def claim_due(conn: Connection, table: Table, limit: int, lease_seconds: float) -> list[int]:
    """Claim up to `limit` pending rows whose time has come: their next attempt is pushed
    `lease_seconds` ahead, so no other worker takes them meanwhile, and a worker that dies
    mid-delivery only delays them (at-least-once). PostgreSQL: FOR UPDATE SKIP LOCKED lets
    several processes claim side by side; SQLite: BEGIN IMMEDIATE serializes the claim."""
    now = utcnow()
    query = (
        select(table.c.id)
        .where(table.c.status == "pending", table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if ids:
        conn.execute(
            update(table)
            .where(table.c.id.in_(ids))
            .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
        )
    return ids


def limited_to_sources(link: Table, owner_column, visible: frozenset[int] | None):
    """For a source-locked caller: only rows (subscriptions, rules) limited to sources the
    caller sees, all of them (a row with no source limit sees every source: hidden)."""
    if visible is None:
        return None
    owner_key, source_key = list(link.c)[:2]
    linked = owner_key == owner_column
    return exists().where(linked) & ~exists().where(linked, source_key.not_in(sorted(visible)))


def linked_sources(
    conn: Connection, link: Table, owner_pks: list[int]
) -> dict[int, list[tuple[int, str]]]:
    """The sources each row (subscription, rule) is limited to, as (source pk, name) pairs."""
    owner_key, source_key = list(link.c)[:2]
    linked: dict[int, list[tuple[int, str]]] = {}
    if owner_pks:
        for row in conn.execute(
            select(owner_key, Source.id, Source.name)
            .join(Source, Source.id == source_key)
            .where(owner_key.in_(owner_pks))
        ):
            linked.setdefault(row[0], []).append((row[1], row[2]))
    return linked


def dispatch_behind(
    database: Database,
    behind: Callable[[Connection], list[int]],
    dispatch: Callable[[Connection, int], int],
    batch: int,
) -> None:
    """Turn the change feed into deliveries for every subscription/rule that is behind it:
    one write transaction per batch of entries (`dispatch` returns how many it read), until
    a batch comes back short."""
    with database.read() as conn:
        owners = behind(conn)
    for owner_pk in owners:
        while True:
            with database.write() as conn:
                read = dispatch(conn, owner_pk)
            if read < batch:
                break
