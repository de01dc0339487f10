""" "Study complete" -> IMAGES_READY, decided in the database so several server processes
can share the work.

An IN_PROGRESS order is complete when
- an MPPS of it is COMPLETED and every instance that MPPS references is stored (in the
  order's tenant), or
- its study has been quiet (no instance added) for `study_complete_quiet_seconds`.

`complete_ready_orders` claims candidate rows (PostgreSQL: FOR UPDATE SKIP LOCKED, so N
workers never wait on or repeat each other; SQLite: the write transaction already holds the
database lock) and moves each with a conditional update. The server runs it periodically
(`run_periodically`); an MPPS COMPLETED runs it at once for its order.

Each move records `order.status_changed` and `study.complete` in the change feed (through
`order_store.record_change`); studies with no order in progress get `study.complete` after
the same quiet period (`index/study_completion.complete_quiet_studies`).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import ColumnElement, Connection, and_, exists, not_, or_, select

from tessera.archive import Archive
from tessera.index.models import Instance, Study
from tessera.index.order_store import ORDER, transition
from tessera.index.orders import (
    IMAGES_READY,
    IN_PROGRESS,
    PerformedInstance,
    PerformedProcedureStep,
)
from tessera.index.study_completion import complete_quiet_studies, quiet_cutoff

log = logging.getLogger(__name__)

MPPS = PerformedProcedureStep.__table__
PERFORMED = PerformedInstance.__table__
INSTANCE = Instance.__table__
STUDY = Study.__table__
PRINCIPAL = "system:study-complete"
COMPLETED = "COMPLETED"


def _all_performed_instances_stored() -> ColumnElement:
    """An MPPS of the order is COMPLETED, and none of its referenced instances is missing
    (with no references, the order must at least have its study)."""
    missing = exists().where(
        PERFORMED.c.mpps_pk == MPPS.c.id,
        not_(
            exists().where(
                INSTANCE.c.tenant_id == ORDER.c.tenant_id,
                INSTANCE.c.sop_instance_uid == PERFORMED.c.sop_instance_uid,
            )
        ),
    )
    has_references = exists().where(PERFORMED.c.mpps_pk == MPPS.c.id)
    return exists().where(
        MPPS.c.order_pk == ORDER.c.id,
        MPPS.c.status == COMPLETED,
        not_(missing),
        or_(has_references, ORDER.c.study_pk.is_not(None)),
    )


def _quiet_since(conn: Connection, quiet_seconds: float) -> ColumnElement:
    """Study rows last changed before now - quiet_seconds (database clock)."""
    cutoff = quiet_cutoff(conn, quiet_seconds)
    return exists().where(STUDY.c.id == ORDER.c.study_pk, STUDY.c.updated_at < cutoff)


def _ready(conn: Connection, quiet_seconds: float) -> ColumnElement:
    return and_(
        ORDER.c.status == IN_PROGRESS,
        or_(_all_performed_instances_stored(), _quiet_since(conn, quiet_seconds)),
    )


def complete_ready_orders(
    conn: Connection, quiet_seconds: float, limit: int = 100, order_pk: int | None = None
) -> list[int]:
    """Move the orders that are complete now to IMAGES_READY (in the caller's write
    transaction); returns their IDs."""
    statement = select(ORDER.c.id).where(_ready(conn, quiet_seconds))
    if order_pk is not None:
        statement = statement.where(ORDER.c.id == order_pk)
    statement = statement.order_by(ORDER.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        statement = statement.with_for_update(of=ORDER, skip_locked=True)
    done = []
    for (candidate,) in conn.execute(statement).all():
        reason = "study complete"
        if transition(conn, candidate, (IN_PROGRESS,), IMAGES_READY, PRINCIPAL, reason):
            done.append(candidate)
    if done:
        log.info("orders images ready", extra={"orders": done})
    return done


def run_once(archive: Archive) -> list[int]:
    """One pass: orders first (an order decides for its study), then studies without an
    order in progress that have been quiet (`study.complete` in the change feed)."""
    quiet = archive.settings.study_complete_quiet_seconds
    with archive.database.write() as conn:
        done = complete_ready_orders(conn, quiet)
    with archive.database.write() as conn:
        complete_quiet_studies(conn, quiet)
    return done


def run_periodically(archive: Archive, stop: threading.Event | None = None) -> None:
    """The study-complete worker loop (a daemon thread of `tessera serve` / `tessera scp`)."""
    interval = max(0.2, float(archive.settings.study_complete_interval_seconds))
    stop = stop or threading.Event()
    while not stop.wait(interval):
        try:
            run_once(archive)
        except Exception:
            log.exception("study-complete check failed")


def start_worker(archive: Archive) -> threading.Event:
    """Start the worker thread; set the returned event to stop it."""
    stop = threading.Event()
    if archive.settings.study_complete_interval_seconds > 0:
        threading.Thread(
            target=run_periodically, args=(archive, stop), name="study-complete", daemon=True
        ).start()
    return stop
