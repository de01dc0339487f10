"""The SQL of orders: the Scope's visibility condition, loading orders with their steps,
searching, and status transitions (conditional updates, so concurrent workers and
processes cannot apply one transition twice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

from sqlalchemy import ColumnElement, Connection, Select, and_, exists, func, select, true, update

from tessera.index import changes
from tessera.index.models import Source, Study
from tessera.index.orders import (
    IMAGES_READY,
    OrderStatusChange,
    ProcedureOrder,
    ScheduledProcedureStep,
)
from tessera.index.study_completion import ORDER_DONE, complete_study
from tessera.scope import Scope

ORDER = ProcedureOrder.__table__
STEP = ScheduledProcedureStep.__table__
HISTORY = OrderStatusChange.__table__


@dataclass
class Step:
    scheduled_procedure_step_id: str
    start_date: date | None
    start_time: time | None
    modality: str
    scheduled_station_ae_title: str
    scheduled_station_name: str
    scheduled_performing_physician_name: str
    description: str


@dataclass
class Order:
    id: int
    tenant_id: int
    source_pk: int
    source: str
    status: str
    accession_number: str
    issuer_of_accession_number: str
    patient_name: str
    patient_id: str
    issuer_of_patient_id: str
    patient_birth_date: date | None
    patient_sex: str
    requested_procedure_id: str
    requested_procedure_description: str
    requested_procedure_code_value: str
    requested_procedure_coding_scheme: str
    requested_procedure_code_meaning: str
    referring_physician_name: str
    priority: str
    reason_for_requested_procedure: str
    study_instance_uid: str
    comments: str
    study_pk: int | None
    created_at: datetime
    updated_at: datetime
    steps: list[Step] = field(default_factory=list)


def prefix_match(dialect: str, column: ColumnElement, prefix: str) -> ColumnElement:
    """Values starting with `prefix` (taken literally), in a form each database answers from
    an index on `column`: GLOB on SQLite (its LIKE ignores case, so cannot use a BINARY
    index), LIKE on PostgreSQL (a varchar_pattern_ops index)."""
    if dialect == "sqlite":
        literal = "".join(f"[{char}]" if char in "*?[" else char for char in prefix)
        return column.op("GLOB")(literal + "*")
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


def visible_orders(scope: Scope, table=ORDER) -> ColumnElement:
    """The orders a Scope may see: its tenant's, and only its sources' when source-locked."""
    condition = table.c.tenant_id == scope.tenant_id
    if scope.source_pks is not None:
        condition = and_(condition, table.c.source_pk.in_(sorted(scope.source_pks)))
    return condition


def _select_orders() -> Select:
    return select(ORDER, Source.name.label("source_name")).join(
        Source.__table__, Source.id == ORDER.c.source_pk
    )


def load_orders(conn: Connection, statement: Select) -> list[Order]:
    """Orders (with their steps) for a statement built on `_select_orders()`."""
    rows = conn.execute(statement).all()
    orders = []
    for row in rows:
        values = dict(row._mapping)
        values["source"] = values.pop("source_name")
        values.pop("patient_name_norm", None)
        orders.append(Order(**values))
    if orders:
        by_pk = {order.id: order for order in orders}
        step_columns = [c for c in STEP.c if c.name in Step.__dataclass_fields__]
        for step in conn.execute(
            select(STEP.c.order_pk, *step_columns)
            .where(STEP.c.order_pk.in_(list(by_pk)))
            .order_by(STEP.c.order_pk, STEP.c.position)
        ):
            values = dict(step._mapping)
            by_pk[values.pop("order_pk")].steps.append(Step(**values))
    return orders


def find_order(conn: Connection, scope: Scope, order_pk: int, lock: bool = False) -> Order | None:
    statement = _select_orders().where(ORDER.c.id == order_pk, visible_orders(scope))
    if lock:
        statement = statement.with_for_update(of=ORDER)
    found = load_orders(conn, statement)
    return found[0] if found else None


def find_by_accession(
    conn: Connection, tenant_id: int, source_pk: int, issuer: str, accession_number: str
) -> Order | None:
    found = load_orders(
        conn,
        _select_orders().where(
            ORDER.c.tenant_id == tenant_id,
            ORDER.c.source_pk == source_pk,
            ORDER.c.issuer_of_accession_number == issuer,
            ORDER.c.accession_number == accession_number,
        ),
    )
    return found[0] if found else None


@dataclass
class OrderSearch:
    patient_name_prefix: str | None = None  # normalized (upper case)
    patient_id: str | None = None
    accession_number: str | None = None
    scheduled_from: date | None = None
    scheduled_to: date | None = None
    modality: str | None = None
    statuses: tuple[str, ...] = ()
    source_pk: int | None = None
    sort: str = "-created"
    limit: int = 100
    offset: int = 0


def _sort_columns(sort: str) -> list[ColumnElement]:
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    first_step = (
        select(func.min(STEP.c.start_date)).where(STEP.c.order_pk == ORDER.c.id).scalar_subquery()
    )
    column = {
        "created": ORDER.c.created_at,
        "scheduled": first_step,
        "patient_name": ORDER.c.patient_name_norm,
        "accession_number": ORDER.c.accession_number,
    }[name]
    tie = ORDER.c.id.desc() if descending else ORDER.c.id
    return [column.desc() if descending else column, tie]


SORT_KEYS = ("created", "scheduled", "patient_name", "accession_number")


def search_orders(conn: Connection, scope: Scope, search: OrderSearch) -> list[Order]:
    conditions: list[ColumnElement] = [visible_orders(scope)]
    if search.patient_name_prefix:
        conditions.append(
            prefix_match(conn.dialect.name, ORDER.c.patient_name_norm, search.patient_name_prefix)
        )
    if search.patient_id:
        conditions.append(ORDER.c.patient_id == search.patient_id)
    if search.accession_number:
        conditions.append(ORDER.c.accession_number == search.accession_number)
    if search.statuses:
        conditions.append(ORDER.c.status.in_(search.statuses))
    if search.source_pk is not None:
        conditions.append(ORDER.c.source_pk == search.source_pk)
    step_conditions: list[ColumnElement] = []
    if search.scheduled_from is not None:
        step_conditions.append(STEP.c.start_date >= search.scheduled_from)
    if search.scheduled_to is not None:
        step_conditions.append(STEP.c.start_date <= search.scheduled_to)
    if search.modality:
        step_conditions.append(STEP.c.modality == search.modality)
    if step_conditions:
        conditions.append(exists().where(STEP.c.order_pk == ORDER.c.id, *step_conditions))
    statement = (
        _select_orders()
        .where(*conditions)
        .order_by(*_sort_columns(search.sort))
        .limit(search.limit)
        .offset(search.offset)
    )
    return load_orders(conn, statement)


def record_change(
    conn: Connection,
    order_pk: int,
    from_status: str | None,
    to_status: str,
    principal: str,
    reason: str = "",
) -> None:
    """Add to the order's status history. A real change (another status) also goes to the
    change feed as `order.status_changed` (at commit), and IMAGES_READY completes the
    order's study (`study.complete`, once per study)."""
    conn.execute(
        HISTORY.insert().values(
            order_pk=order_pk,
            from_status=from_status,
            to_status=to_status,
            principal=principal[:160],
            reason=reason[:512],
        )
    )
    if from_status == to_status:
        return
    order = conn.execute(
        select(
            ORDER.c.tenant_id,
            ORDER.c.source_pk,
            ORDER.c.accession_number,
            ORDER.c.study_pk,
            func.coalesce(Study.study_instance_uid, ORDER.c.study_instance_uid).label("study_uid"),
        )
        .outerjoin(Study, Study.id == ORDER.c.study_pk)
        .where(ORDER.c.id == order_pk)
    ).one()
    detail = {
        "order_id": order_pk,
        "accession_number": order.accession_number,
        "from_status": from_status,
        "order_status": to_status,
    }
    if reason:
        detail["reason"] = reason[:512]
    changes.defer_change(
        conn,
        order.tenant_id,
        order.source_pk,
        changes.ORDER_STATUS_CHANGED,
        order.study_uid,
        detail=detail,
    )
    if to_status == IMAGES_READY and order.study_pk is not None:
        complete_study(
            conn,
            order.tenant_id,
            order.study_pk,
            order.source_pk,
            ORDER_DONE,
            {"order_id": order_pk, "order_status": IMAGES_READY},
        )


def transition(
    conn: Connection,
    order_pk: int,
    from_statuses: tuple[str, ...],
    to_status: str,
    principal: str,
    reason: str = "",
    extra: ColumnElement | None = None,
    **values: object,
) -> bool:
    """Move one order to `to_status` if it is in one of `from_statuses` (and `extra` holds);
    record the change. False when another writer got there first or the status differs."""
    current = conn.execute(
        select(ORDER.c.status).where(
            ORDER.c.id == order_pk,
            ORDER.c.status.in_(from_statuses),
            extra if extra is not None else true(),
        )
    ).scalar_one_or_none()
    if current is None:
        return False
    changed = conn.execute(
        update(ORDER)
        .where(ORDER.c.id == order_pk, ORDER.c.status == current)
        .values(status=to_status, updated_at=func.now(), **values)
    ).rowcount
    if not changed:
        return False
    record_change(conn, order_pk, current, to_status, principal, reason)
    return True


def history(conn: Connection, order_pk: int) -> list[dict]:
    return [
        {
            "at": row.at.isoformat() if row.at else None,
            "from_status": row.from_status,
            "to_status": row.to_status,
            "principal": row.principal,
            "reason": row.reason,
        }
        for row in conn.execute(
            select(HISTORY).where(HISTORY.c.order_pk == order_pk).order_by(HISTORY.c.id)
        )
    ]
