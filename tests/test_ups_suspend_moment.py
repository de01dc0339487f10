"""A suspended global UPS subscription keeps the workitems created before it was suspended
and takes in none created after (PS3.18 §11.12), even within the same second: SQLite's
CURRENT_TIMESTAMP keeps whole seconds, so both moments are set by the archive, with
microseconds (over the real index, SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select

from tessera.index.order_store import STEP
from tessera.scope import full_scope
from tessera.services import orders as o
from tessera.services import ups_events
from tests.test_orders_service import order_body, world, write  # noqa: F401

WORKLIST = "1.2.840.10008.5.1.4.34.5"


def _workitem(archive, scope, accession: str) -> str:  # type: ignore[no-untyped-def]
    order, _ = write(archive, lambda c: o.create_order(c, scope, order_body(accession)))
    with archive.database.read() as conn:
        return conn.execute(
            select(STEP.c.workitem_uid).where(STEP.c.order_pk == order.id)
        ).scalar_one()


def test_suspension_splits_workitems_created_in_the_same_second(world) -> None:  # noqa: F811
    archive, tenant, _, _ = world
    scope = full_scope(tenant, "test")
    write(archive, lambda c: ups_events.subscribe(c, scope, WORKLIST, "WATCHER", False))
    before = _workitem(archive, scope, "BEFORE")
    write(archive, lambda c: ups_events.suspend(c, scope, WORKLIST, "WATCHER"))
    after = _workitem(archive, scope, "AFTER")
    with archive.database.read() as conn:
        assert ups_events.has_subscriber(conn, tenant, before)
        assert not ups_events.has_subscriber(conn, tenant, after)
