"""Webhook subscriptions and deliveries in the index, always scoped by the caller's Scope.

Deliveries are made from the change feed: each subscription keeps a cursor (`last_seq`); the
dispatcher turns the changes after it that match into `webhook_delivery` rows and moves the
cursor in the same transaction. Because the feed is gapless and in commit order, no change
is skipped, and the (subscription, change) unique key makes a repeated dispatch harmless.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tessera.index.changes import Change, last_seq, read_all_changes
from tessera.index.clock import as_utc, iso, utcnow
from tessera.index.errors import NotFound
from tessera.index.event_models import (
    ChangeCounter,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSource,
    WebhookSubscription,
)
from tessera.index.outbox_common import claim_due, limited_to_sources, linked_sources
from tessera.scope import Scope

DISPATCH_BATCH = 500


@dataclass(frozen=True)
class Subscription:
    id: int
    tenant_id: int
    url: str
    description: str
    event_types: tuple[str, ...]
    modalities: tuple[str, ...]
    order_statuses: tuple[str, ...]
    sources: tuple[str, ...]
    source_pks: frozenset[int]
    enabled: bool
    last_seq: int
    created_by: str
    created_at: datetime | None

    def public(self) -> dict:
        return {
            "id": self.id,
            "url": self.url,
            "description": self.description,
            "event_types": list(self.event_types),
            "filters": {
                "sources": list(self.sources),
                "modalities": list(self.modalities),
                "order_statuses": list(self.order_statuses),
            },
            "enabled": self.enabled,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
        }

    def matches(self, change: Change) -> bool:
        if "*" not in self.event_types and change.kind not in self.event_types:
            return False
        if self.source_pks and change.source_pk not in self.source_pks:
            return False
        if self.modalities and change.detail.get("modality") not in self.modalities:
            return False
        if self.order_statuses and change.detail.get("order_status") not in self.order_statuses:
            return False
        return True


def new_secret() -> str:
    """A Standard Webhooks secret: 'whsec_' + base64 of 32 random bytes."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _split(joined: str) -> tuple[str, ...]:
    return tuple(v for v in joined.split(",") if v)


def _visible(scope: Scope):
    clause = WebhookSubscription.tenant_id == scope.tenant_id
    locked = limited_to_sources(WebhookSource.__table__, WebhookSubscription.id, scope.source_pks)
    return clause if locked is None else clause & locked


def create_subscription(
    conn: Connection,
    scope: Scope,
    url: str,
    event_types: list[str],
    source_pks: frozenset[int],
    modalities: list[str],
    order_statuses: list[str],
    description: str,
    secret: str,
) -> Subscription:
    subscription_pk = conn.execute(
        insert(WebhookSubscription)
        .values(
            tenant_id=scope.tenant_id,
            url=url,
            description=description,
            event_types=",".join(event_types),
            modalities=",".join(modalities),
            order_statuses=",".join(order_statuses),
            secret=secret,
            enabled=True,
            # Only changes from now on (the feed before it is readable at {api}/changes).
            last_seq=last_seq(conn, scope.tenant_id),
            created_by=scope.principal[:160],
        )
        .returning(WebhookSubscription.id)
    ).scalar_one()
    for source_pk in sorted(source_pks):
        conn.execute(
            insert(WebhookSource).values(subscription_pk=subscription_pk, source_pk=source_pk)
        )
    return get_subscription(conn, scope, subscription_pk)


def _load(conn: Connection, rows) -> list[Subscription]:
    rows = list(rows)
    sources = linked_sources(conn, WebhookSource.__table__, [r.id for r in rows])
    return [
        Subscription(
            id=r.id,
            tenant_id=r.tenant_id,
            url=r.url,
            description=r.description,
            event_types=_split(r.event_types),
            modalities=_split(r.modalities),
            order_statuses=_split(r.order_statuses),
            sources=tuple(sorted(name for _, name in sources.get(r.id, []))),
            source_pks=frozenset(pk for pk, _ in sources.get(r.id, [])),
            enabled=r.enabled,
            last_seq=r.last_seq,
            created_by=r.created_by,
            created_at=r.created_at,
        )
        for r in rows
    ]


_COLUMNS = (
    WebhookSubscription.id,
    WebhookSubscription.tenant_id,
    WebhookSubscription.url,
    WebhookSubscription.description,
    WebhookSubscription.event_types,
    WebhookSubscription.modalities,
    WebhookSubscription.order_statuses,
    WebhookSubscription.enabled,
    WebhookSubscription.last_seq,
    WebhookSubscription.created_by,
    WebhookSubscription.created_at,
)


def list_subscriptions(conn: Connection, scope: Scope) -> list[Subscription]:
    rows = conn.execute(select(*_COLUMNS).where(_visible(scope)).order_by(WebhookSubscription.id))
    return _load(conn, rows)


def get_subscription(conn: Connection, scope: Scope, subscription_pk: int) -> Subscription:
    rows = conn.execute(
        select(*_COLUMNS).where(_visible(scope), WebhookSubscription.id == subscription_pk)
    )
    found = _load(conn, rows)
    if not found:
        raise NotFound(f"no webhook {subscription_pk}")
    return found[0]


def set_enabled(conn: Connection, scope: Scope, subscription_pk: int, enabled: bool) -> None:
    get_subscription(conn, scope, subscription_pk)
    conn.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == subscription_pk)
        .values(enabled=enabled)
    )


def delete_subscription(conn: Connection, scope: Scope, subscription_pk: int) -> None:
    get_subscription(conn, scope, subscription_pk)
    delivery_pks = select(WebhookDelivery.id).where(
        WebhookDelivery.subscription_pk == subscription_pk
    )
    conn.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_pk.in_(delivery_pks)))
    conn.execute(delete(WebhookDelivery).where(WebhookDelivery.subscription_pk == subscription_pk))
    conn.execute(delete(WebhookSource).where(WebhookSource.subscription_pk == subscription_pk))
    conn.execute(delete(WebhookSubscription).where(WebhookSubscription.id == subscription_pk))


# --- dispatch: change feed -> deliveries ---------------------------------------------------


def subscriptions_behind(conn: Connection) -> list[int]:
    """Enabled subscriptions whose tenant's feed has moved past their cursor."""
    return list(
        conn.execute(
            select(WebhookSubscription.id)
            .join(ChangeCounter, ChangeCounter.tenant_id == WebhookSubscription.tenant_id)
            .where(
                WebhookSubscription.enabled.is_(True),
                WebhookSubscription.last_seq < ChangeCounter.last_seq,
            )
        ).scalars()
    )


def dispatch(conn: Connection, subscription_pk: int) -> int:
    """Turn the next batch of changes after the subscription's cursor into deliveries; move
    the cursor. Returns the number of changes read (-1: another worker holds it)."""
    lock = select(WebhookSubscription.id).where(WebhookSubscription.id == subscription_pk)
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update(skip_locked=True)
    if conn.execute(lock).first() is None:
        return -1
    row = conn.execute(select(*_COLUMNS).where(WebhookSubscription.id == subscription_pk))
    subscription = _load(conn, row)[0]
    found = read_all_changes(conn, subscription.tenant_id, subscription.last_seq, DISPATCH_BATCH)
    if not found:
        return 0
    now = utcnow()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for change in found:
        if not subscription.matches(change):
            continue
        payload = orjson.dumps(
            {"type": change.kind, "timestamp": iso(change.created_at), "data": change.public()}
        )
        conn.execute(
            dialect.insert(WebhookDelivery)
            .values(
                tenant_id=subscription.tenant_id,
                subscription_pk=subscription.id,
                change_seq=change.seq,
                kind=change.kind,
                source_pk=change.source_pk,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                last_error="",
            )
            .on_conflict_do_nothing(index_elements=["subscription_pk", "change_seq"])
        )
    conn.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == subscription.id)
        .values(last_seq=found[-1].seq)
    )
    return len(found)


# --- sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    tenant_id: int
    url: str
    secret: str
    message_id: str
    payload: bytes
    attempts: int
    created_at: datetime


def claim(conn: Connection, limit: int, lease_seconds: float) -> list[Claimed]:
    ids = claim_due(conn, WebhookDelivery.__table__, limit, lease_seconds)
    if not ids:
        return []
    rows = conn.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.tenant_id,
            WebhookDelivery.subscription_pk,
            WebhookDelivery.change_seq,
            WebhookDelivery.payload,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
            WebhookSubscription.url,
            WebhookSubscription.secret,
        )
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_pk)
        .where(WebhookDelivery.id.in_(ids))
    )
    return [
        Claimed(
            id=r.id,
            tenant_id=r.tenant_id,
            url=r.url,
            secret=r.secret,
            # Stable across retries: receivers deduplicate on it (at-least-once delivery).
            message_id=f"msg_t{r.tenant_id}_w{r.subscription_pk}_s{r.change_seq}",
            payload=r.payload,
            attempts=r.attempts,
            created_at=r.created_at,
        )
        for r in rows
    ]


def record_attempt(
    conn: Connection,
    delivery_pk: int,
    status_code: int | None,
    error: str,
    duration_ms: int,
    next_attempt_at: datetime | None,
) -> None:
    """Record one attempt; `error` empty means delivered. `next_attempt_at` None after a
    failure: dead-lettered."""
    now = utcnow()
    conn.execute(
        insert(WebhookAttempt).values(
            delivery_pk=delivery_pk,
            attempted_at=now,
            status_code=status_code,
            error=error[:512],
            duration_ms=duration_ms,
        )
    )
    values: dict = {
        "attempts": WebhookDelivery.attempts + 1,
        "last_status_code": status_code,
        "last_error": error[:512],
    }
    if not error:
        values.update(status="delivered", delivered_at=now)
    elif next_attempt_at is None:
        values.update(status="dead")
    else:
        values.update(next_attempt_at=next_attempt_at)
    conn.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_pk).values(values))


# --- reading and replaying (API) ---------------------------------------------------------


def _visible_deliveries(scope: Scope):
    clause = _visible(scope)
    if scope.source_pks is not None:
        clause = clause & WebhookDelivery.source_pk.in_(sorted(scope.source_pks))
    return clause


_DELIVERY_COLUMNS = (
    WebhookDelivery.id,
    WebhookDelivery.subscription_pk,
    WebhookDelivery.change_seq,
    WebhookDelivery.kind,
    WebhookDelivery.status,
    WebhookDelivery.attempts,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.created_at,
    WebhookDelivery.delivered_at,
    WebhookDelivery.last_status_code,
    WebhookDelivery.last_error,
)


def _delivery_public(row) -> dict:
    return {
        "id": row.id,
        "webhook": row.subscription_pk,
        "seq": row.change_seq,
        "type": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
        "created_at": iso(row.created_at),
        "delivered_at": iso(row.delivered_at),
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
    }


def list_deliveries(
    conn: Connection,
    scope: Scope,
    subscription_pk: int,
    status: str | None,
    limit: int,
    before_id: int | None,
) -> list[dict]:
    get_subscription(conn, scope, subscription_pk)
    query = (
        select(*_DELIVERY_COLUMNS)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_pk)
        .where(_visible_deliveries(scope), WebhookDelivery.subscription_pk == subscription_pk)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if status:
        query = query.where(WebhookDelivery.status == status)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return [_delivery_public(row) for row in conn.execute(query)]


def get_delivery(conn: Connection, scope: Scope, delivery_pk: int) -> dict:
    row = conn.execute(
        select(*_DELIVERY_COLUMNS, WebhookDelivery.payload)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_pk)
        .where(_visible_deliveries(scope), WebhookDelivery.id == delivery_pk)
    ).first()
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_pk}")
    found = _delivery_public(row)
    found["payload"] = orjson.loads(row.payload)
    found["attempt_log"] = [
        {
            "at": iso(a.attempted_at),
            "status_code": a.status_code,
            "error": a.error,
            "duration_ms": a.duration_ms,
        }
        for a in conn.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_pk == delivery_pk)
            .order_by(WebhookAttempt.id)
        )
    ]
    return found


def replay(conn: Connection, scope: Scope, delivery_pk: int) -> dict:
    """Send a delivery again (a dead letter, or a delivered one): pending now, with a fresh
    retry window."""
    get_delivery(conn, scope, delivery_pk)
    now = utcnow()
    conn.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_pk)
        .values(status="pending", next_attempt_at=now, created_at=now)
    )
    return get_delivery(conn, scope, delivery_pk)


def replay_dead(conn: Connection, scope: Scope, subscription_pk: int) -> int:
    get_subscription(conn, scope, subscription_pk)
    now = utcnow()
    ids = select(WebhookDelivery.id).where(
        WebhookDelivery.subscription_pk == subscription_pk, WebhookDelivery.status == "dead"
    )
    if scope.source_pks is not None:
        ids = ids.where(WebhookDelivery.source_pk.in_(sorted(scope.source_pks)))
    return conn.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(status="pending", next_attempt_at=now, created_at=now)
    ).rowcount


def expired(created_at: datetime, max_age_seconds: float) -> bool:
    """Has a delivery created at `created_at` used up its retry window?"""
    return utcnow() - as_utc(created_at) > timedelta(seconds=max_age_seconds)
