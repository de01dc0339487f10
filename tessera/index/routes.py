"""Routing rules and their per-instance deliveries in the index, scoped by the caller's Scope.

Like webhooks, a rule keeps a cursor in the change feed (`last_seq`); the dispatcher turns
matching changes into `route_delivery` rows (one per instance) and moves the cursor in the
same transaction. Trigger `instance`: each `instance.stored`; trigger `study_complete`: every
instance of the study when `study.complete` is recorded (by the orders module). A delivery
row is unique per (rule, SOP Instance UID): sending a study again sets its rows pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tessera.index import changes
from tessera.index.changes import Change, last_seq, read_all_changes
from tessera.index.clock import iso, utcnow
from tessera.index.errors import Conflict, NotFound
from tessera.index.event_models import ChangeCounter, RouteDelivery, RouteRule, RouteSource
from tessera.index.models import Instance, Series, Study
from tessera.index.outbox_common import claim_due, limited_to_sources, linked_sources
from tessera.scope import Scope

DISPATCH_BATCH = 500
TRIGGERS = ("instance", "study_complete")
KINDS = ("dicomweb", "dimse")


@dataclass(frozen=True)
class Rule:
    id: int
    tenant_id: int
    name: str
    trigger: str
    modalities: tuple[str, ...]
    sources: tuple[str, ...]
    source_pks: frozenset[int]
    destination_kind: str
    destination_url: str
    destination_authorization: str
    ae_title: str
    host: str
    port: int
    calling_ae_title: str
    enabled: bool
    last_seq: int
    created_at: datetime | None

    def destination(self) -> dict:
        if self.destination_kind == "dicomweb":
            return {
                "kind": "dicomweb",
                "url": self.destination_url,
                "authorization": bool(self.destination_authorization),
            }
        return {
            "kind": "dimse",
            "ae_title": self.ae_title,
            "host": self.host,
            "port": self.port,
            "calling_ae_title": self.calling_ae_title,
        }

    def public(self) -> dict:
        return {
            "name": self.name,
            "trigger": self.trigger,
            "conditions": {"sources": list(self.sources), "modalities": list(self.modalities)},
            "destination": self.destination(),
            "enabled": self.enabled,
            "created_at": iso(self.created_at),
        }

    def scope(self) -> Scope:
        """What the rule may send: its tenant, its sources."""
        return Scope(tenant_id=self.tenant_id, source_pks=self.source_pks or None)


def _split(joined: str) -> tuple[str, ...]:
    return tuple(v for v in joined.split(",") if v)


def _visible(scope: Scope):
    clause = RouteRule.tenant_id == scope.tenant_id
    locked = limited_to_sources(RouteSource.__table__, RouteRule.id, scope.source_pks)
    return clause if locked is None else clause & locked


def _load(conn: Connection, rows) -> list[Rule]:
    rows = list(rows)
    linked = linked_sources(conn, RouteSource.__table__, [r.id for r in rows])
    return [
        Rule(
            id=r.id,
            tenant_id=r.tenant_id,
            name=r.name,
            trigger=r.trigger,
            modalities=_split(r.modalities),
            sources=tuple(sorted(name for _, name in linked.get(r.id, []))),
            source_pks=frozenset(pk for pk, _ in linked.get(r.id, [])),
            destination_kind=r.destination_kind,
            destination_url=r.destination_url,
            destination_authorization=r.destination_authorization,
            ae_title=r.ae_title,
            host=r.host,
            port=r.port,
            calling_ae_title=r.calling_ae_title,
            enabled=r.enabled,
            last_seq=r.last_seq,
            created_at=r.created_at,
        )
        for r in rows
    ]


def create_rule(
    conn: Connection, scope: Scope, name: str, values: dict, source_pks: frozenset[int]
) -> Rule:
    exists = conn.execute(
        select(RouteRule.id).where(RouteRule.tenant_id == scope.tenant_id, RouteRule.name == name)
    ).first()
    if exists is not None:
        raise Conflict(f"a route named {name!r} exists")
    rule_pk = conn.execute(
        insert(RouteRule)
        .values(
            tenant_id=scope.tenant_id,
            name=name,
            enabled=True,
            last_seq=last_seq(conn, scope.tenant_id),
            **values,
        )
        .returning(RouteRule.id)
    ).scalar_one()
    for source_pk in sorted(source_pks):
        conn.execute(insert(RouteSource).values(rule_pk=rule_pk, source_pk=source_pk))
    return get_rule(conn, scope, name)


def list_rules(conn: Connection, scope: Scope) -> list[Rule]:
    return _load(
        conn, conn.execute(select(RouteRule).where(_visible(scope)).order_by(RouteRule.name))
    )


def get_rule(conn: Connection, scope: Scope, name: str) -> Rule:
    found = _load(
        conn, conn.execute(select(RouteRule).where(_visible(scope), RouteRule.name == name))
    )
    if not found:
        raise NotFound(f"no route {name!r}")
    return found[0]


def delete_rule(conn: Connection, scope: Scope, name: str) -> None:
    rule = get_rule(conn, scope, name)
    conn.execute(delete(RouteDelivery).where(RouteDelivery.rule_pk == rule.id))
    conn.execute(delete(RouteSource).where(RouteSource.rule_pk == rule.id))
    conn.execute(delete(RouteRule).where(RouteRule.id == rule.id))


def backlog(conn: Connection, scope: Scope, rule: Rule) -> dict[str, int]:
    counts = {"pending": 0, "delivered": 0, "dead": 0}
    query = (
        select(RouteDelivery.status, func.count())
        .where(RouteDelivery.rule_pk == rule.id)
        .group_by(RouteDelivery.status)
    )
    if scope.source_pks is not None:
        query = query.where(RouteDelivery.source_pk.in_(sorted(scope.source_pks)))
    counts.update(dict(conn.execute(query).all()))
    return counts


# --- dispatch ------------------------------------------------------------------------------


def rules_behind(conn: Connection) -> list[int]:
    return list(
        conn.execute(
            select(RouteRule.id)
            .join(ChangeCounter, ChangeCounter.tenant_id == RouteRule.tenant_id)
            .where(RouteRule.enabled.is_(True), RouteRule.last_seq < ChangeCounter.last_seq)
        ).scalars()
    )


def _matches(rule: Rule, change: Change) -> bool:
    wanted = changes.INSTANCE_STORED if rule.trigger == "instance" else changes.STUDY_COMPLETE
    if change.kind != wanted:
        return False
    if rule.source_pks and change.source_pk not in rule.source_pks:
        return False
    if rule.trigger == "instance" and rule.modalities:
        return change.detail.get("modality") in rule.modalities
    return True


def _study_instances(conn: Connection, rule: Rule, study_instance_uid: str) -> list:
    query = (
        select(Instance.sop_instance_uid, Instance.source_pk, Series.modality)
        .join(Study, Study.id == Instance.study_pk)
        .join(Series, Series.id == Instance.series_pk)
        .where(Study.tenant_id == rule.tenant_id, Study.study_instance_uid == study_instance_uid)
    )
    if rule.source_pks:
        query = query.where(Instance.source_pk.in_(sorted(rule.source_pks)))
    if rule.modalities:
        query = query.where(Series.modality.in_(rule.modalities))
    return list(conn.execute(query))


def _queue(conn: Connection, rule: Rule, study: str, sop: str, source_pk: int | None) -> None:
    now = utcnow()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(RouteDelivery).values(
        tenant_id=rule.tenant_id,
        rule_pk=rule.id,
        source_pk=source_pk,
        study_instance_uid=study,
        sop_instance_uid=sop,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        last_error="",
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["rule_pk", "sop_instance_uid"],
            set_={
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "last_error": "",
            },
        )
    )


def dispatch(conn: Connection, rule_pk: int) -> int:
    """Queue the instances of the next batch of matching changes; returns the number of
    changes read (-1: another worker holds the rule)."""
    lock = select(RouteRule.id).where(RouteRule.id == rule_pk)
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update(skip_locked=True)
    if conn.execute(lock).first() is None:
        return -1
    rule = _load(conn, conn.execute(select(RouteRule).where(RouteRule.id == rule_pk)))[0]
    found = read_all_changes(conn, rule.tenant_id, rule.last_seq, DISPATCH_BATCH)
    for change in found:
        if not _matches(rule, change) or not change.study_instance_uid:
            continue
        if rule.trigger == "instance" and change.sop_instance_uid:
            _queue(conn, rule, change.study_instance_uid, change.sop_instance_uid, change.source_pk)
        else:
            for row in _study_instances(conn, rule, change.study_instance_uid):
                _queue(conn, rule, change.study_instance_uid, row.sop_instance_uid, row.source_pk)
    if found:
        conn.execute(
            update(RouteRule).where(RouteRule.id == rule.id).values(last_seq=found[-1].seq)
        )
    return len(found)


def send_study_again(conn: Connection, scope: Scope, name: str, study_instance_uid: str) -> int:
    """Queue every instance of the study the rule (and the caller) may send; the count."""
    rule = get_rule(conn, scope, name)
    rows = [
        row
        for row in _study_instances(conn, rule, study_instance_uid)
        if scope.source_pks is None or row.source_pk in scope.source_pks
    ]
    for row in rows:
        _queue(conn, rule, study_instance_uid, row.sop_instance_uid, row.source_pk)
    return len(rows)


def send_delivery_again(conn: Connection, scope: Scope, name: str, delivery_id: int) -> dict:
    """One delivered or dead instance of the rule back to pending (attempts from 0); the
    delivery as `list_deliveries` shows it. NotFound for a delivery of another rule or of a
    source the caller does not see; Conflict while it is still pending."""
    rule = get_rule(conn, scope, name)
    query = select(RouteDelivery).where(
        RouteDelivery.rule_pk == rule.id, RouteDelivery.id == delivery_id
    )
    if scope.source_pks is not None:
        query = query.where(RouteDelivery.source_pk.in_(sorted(scope.source_pks)))
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id} of route {name!r}")
    if row.status == "pending":
        raise Conflict(f"delivery {delivery_id} is still pending: it is being sent")
    now = utcnow()
    conn.execute(
        update(RouteDelivery)
        .where(RouteDelivery.id == delivery_id)
        .values(status="pending", attempts=0, next_attempt_at=now, created_at=now, last_error="")
    )
    return _delivery_json(
        conn.execute(select(RouteDelivery).where(RouteDelivery.id == delivery_id)).one()
    )


def replay_dead(conn: Connection, scope: Scope, name: str) -> int:
    rule = get_rule(conn, scope, name)
    now = utcnow()
    query = (
        update(RouteDelivery)
        .where(RouteDelivery.rule_pk == rule.id, RouteDelivery.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now, created_at=now)
    )
    if scope.source_pks is not None:
        query = query.where(RouteDelivery.source_pk.in_(sorted(scope.source_pks)))
    return conn.execute(query).rowcount


# --- sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    rule: Rule
    deliveries: dict[str, tuple[int, int, datetime]]  # SOP Instance UID -> (id, attempts, created)


def claim(conn: Connection, limit: int, lease_seconds: float) -> list[Batch]:
    """Claim due deliveries, grouped per rule (one association / request per group)."""
    ids = claim_due(conn, RouteDelivery.__table__, limit, lease_seconds)
    if not ids:
        return []
    rows = list(
        conn.execute(
            select(
                RouteDelivery.id,
                RouteDelivery.rule_pk,
                RouteDelivery.sop_instance_uid,
                RouteDelivery.attempts,
                RouteDelivery.created_at,
            ).where(RouteDelivery.id.in_(ids))
        )
    )
    rules = {
        r.id: r
        for r in _load(
            conn,
            conn.execute(select(RouteRule).where(RouteRule.id.in_({r.rule_pk for r in rows}))),
        )
    }
    batches: dict[int, Batch] = {}
    for row in rows:
        batch = batches.setdefault(row.rule_pk, Batch(rules[row.rule_pk], {}))
        batch.deliveries[row.sop_instance_uid] = (row.id, row.attempts, row.created_at)
    return list(batches.values())


def record_result(
    conn: Connection, delivery_pk: int, error: str, next_attempt_at: datetime | None
) -> None:
    now = utcnow()
    values: dict = {"attempts": RouteDelivery.attempts + 1, "last_error": error[:512]}
    if not error:
        values.update(status="delivered", delivered_at=now)
    elif next_attempt_at is None:
        values.update(status="dead")
    else:
        values.update(next_attempt_at=next_attempt_at)
    conn.execute(update(RouteDelivery).where(RouteDelivery.id == delivery_pk).values(values))


def list_deliveries(
    conn: Connection,
    scope: Scope,
    name: str,
    status: str | None,
    study_instance_uid: str | None,
    limit: int,
    before_id: int | None = None,
) -> list[dict]:
    """The rule's deliveries the caller may see, newest first; `before_id` pages back (the
    last id of the previous page), stable while new deliveries arrive."""
    rule = get_rule(conn, scope, name)
    query = (
        select(RouteDelivery)
        .where(RouteDelivery.rule_pk == rule.id)
        .order_by(RouteDelivery.id.desc())
        .limit(limit)
    )
    if scope.source_pks is not None:
        query = query.where(RouteDelivery.source_pk.in_(sorted(scope.source_pks)))
    if status:
        query = query.where(RouteDelivery.status == status)
    if study_instance_uid:
        query = query.where(RouteDelivery.study_instance_uid == study_instance_uid)
    if before_id is not None:
        query = query.where(RouteDelivery.id < before_id)
    return [_delivery_json(r) for r in conn.execute(query)]


def _delivery_json(r) -> dict:
    return {
        "id": r.id,
        "study_instance_uid": r.study_instance_uid,
        "sop_instance_uid": r.sop_instance_uid,
        "status": r.status,
        "attempts": r.attempts,
        "next_attempt_at": iso(r.next_attempt_at) if r.status == "pending" else None,
        "delivered_at": iso(r.delivered_at),
        "last_error": r.last_error,
    }
