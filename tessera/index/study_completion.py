"""Study complete, once per study: the pending mark made with a study's first instance, and
the one place that turns it into a `study.complete` change (docs/events.md).

A study is complete when
- an order of it reaches IMAGES_READY (the orders definition, docs/orders.md: MPPS COMPLETED
  with every referenced instance stored, a committed upload session, or the quiet period),
- or, with no IN_PROGRESS order of it, it had no new instance for the quiet period.

`complete_study` writes the mark and defers the change to the end of the transaction, so
the feed has it exactly when the transaction that decided it commits, and only once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, Connection, exists, func, not_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tessera.index import changes
from tessera.index.models import Study
from tessera.index.orders import IN_PROGRESS, ProcedureOrder
from tessera.index.workflow_models import StudyCompletion

COMPLETION = StudyCompletion.__table__
STUDY = Study.__table__
ORDER = ProcedureOrder.__table__
ORDER_DONE, UPLOAD_SESSION, QUIET = "order", "upload_session", "quiet"


def _insert(conn: Connection):  # noqa: ANN202 (a dialect's Insert)
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(COMPLETION)


def mark_pending(conn: Connection, tenant_id: int, study_pk: int, source_pk: int) -> None:
    """A study's first instance: its completion is now awaited."""
    conn.execute(
        _insert(conn)
        .values(study_pk=study_pk, tenant_id=tenant_id, source_pk=source_pk, completed_by="")
        .on_conflict_do_nothing(index_elements=["study_pk"])
    )


def complete_study(
    conn: Connection,
    tenant_id: int,
    study_pk: int,
    source_pk: int,
    how: str,
    detail: dict | None = None,
) -> bool:
    """Mark the study complete and record `study.complete` at commit, unless it already was
    complete; True when this call completed it."""
    changed = conn.execute(
        update(COMPLETION)
        .where(COMPLETION.c.study_pk == study_pk, COMPLETION.c.completed_at.is_(None))
        .values(completed_at=func.now(), completed_by=how)
    ).rowcount
    if not changed:
        # A study stored before the marks existed. (rowcount of an INSERT .. ON CONFLICT
        # is not reliable across drivers: RETURNING says whether a row was written.)
        inserted = conn.execute(
            _insert(conn)
            .values(
                study_pk=study_pk,
                tenant_id=tenant_id,
                source_pk=source_pk,
                completed_at=func.now(),
                completed_by=how,
            )
            .on_conflict_do_nothing(index_elements=["study_pk"])
            .returning(COMPLETION.c.study_pk)
        ).first()
        changed = int(inserted is not None)
    if not changed:
        return False
    row = conn.execute(
        select(STUDY.c.study_instance_uid, COMPLETION.c.source_pk)
        .join(COMPLETION, COMPLETION.c.study_pk == STUDY.c.id)
        .where(STUDY.c.id == study_pk)
    ).one()
    changes.defer_change(
        conn,
        tenant_id,
        row.source_pk,
        changes.STUDY_COMPLETE,
        row.study_instance_uid,
        detail={"completed_by": how, **(detail or {})},
    )
    return True


def quiet_cutoff(conn: Connection, quiet_seconds: float) -> ColumnElement:
    """now - quiet_seconds on the database's clock, comparable with study.updated_at."""
    if conn.dialect.name == "sqlite":
        # CURRENT_TIMESTAMP text ('YYYY-MM-DD HH:MM:SS', UTC) compares in order.
        return func.datetime("now", f"-{float(quiet_seconds)} seconds")
    return func.now() - timedelta(seconds=quiet_seconds)


def complete_quiet_studies(conn: Connection, quiet_seconds: float, limit: int = 100) -> list[int]:
    """Pending studies with no instance for `quiet_seconds` and no IN_PROGRESS order (an
    order decides for its study) become complete; their study keys. PostgreSQL: claimed with
    FOR UPDATE SKIP LOCKED, so several workers share them."""
    in_progress_order = exists().where(
        ORDER.c.study_pk == STUDY.c.id, ORDER.c.status == IN_PROGRESS
    )
    statement = (
        select(COMPLETION.c.study_pk, COMPLETION.c.tenant_id, COMPLETION.c.source_pk)
        .join(STUDY, STUDY.c.id == COMPLETION.c.study_pk)
        .where(
            COMPLETION.c.completed_at.is_(None),
            STUDY.c.updated_at < quiet_cutoff(conn, quiet_seconds),
            not_(in_progress_order),
        )
        .order_by(COMPLETION.c.study_pk)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        statement = statement.with_for_update(of=COMPLETION, skip_locked=True)
    done = []
    for row in conn.execute(statement).all():
        if complete_study(conn, row.tenant_id, row.study_pk, row.source_pk, QUIET):
            done.append(row.study_pk)
    return done
