"""Tables of the change feed (transactional outbox), webhook subscriptions and deliveries,
and routing rules and their per-instance deliveries. Registered on the index's Base;
migration 0008_change_feed creates them. See docs/events.md and docs/routing.md.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.models import Base, Key

Seq = BigInteger().with_variant(Integer(), "sqlite")


class ChangeCounter(Base):
    """The last sequence number handed out in a tenant's change feed. Updated inside the
    transaction that records a change: the row lock orders writers, so sequence numbers are
    gapless and in commit order (see tessera.index.changes)."""

    __tablename__ = "change_counter"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Seq, default=0)


class ChangeEvent(Base):
    __tablename__ = "change_event"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(48))
    # NULL: a change bound to no source; only callers that see every source see it.
    source_pk: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    # Small JSON object (modality, SOP class, order status, ...).
    detail: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscription"
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(256), default="")
    # Comma-separated change kinds ('*' = every kind).
    event_types: Mapped[str] = mapped_column(Text)
    # Comma-separated filters; '' = no filter.
    modalities: Mapped[str] = mapped_column(Text, default="")
    order_statuses: Mapped[str] = mapped_column(Text, default="")
    # Standard Webhooks secret (whsec_ + base64); never returned after creation, never logged.
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Dispatch cursor: changes up to this sequence have been turned into deliveries.
    last_seq: Mapped[int] = mapped_column(Seq, default=0)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookSource(Base):
    """The sources a subscription is limited to; none listed means every source."""

    __tablename__ = "webhook_source"
    subscription_pk: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscription.id", ondelete="CASCADE"), primary_key=True
    )
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"), primary_key=True)


class WebhookDelivery(Base):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_pk", "change_seq"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_tenant", "tenant_id", "id"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    subscription_pk: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscription.id", ondelete="CASCADE")
    )
    change_seq: Mapped[int] = mapped_column(Seq)
    kind: Mapped[str] = mapped_column(String(48))
    source_pk: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    # The exact body sent on every attempt (the webhook-id stays the same too).
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # pending | delivered | dead
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(512), default="")


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempt"
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    delivery_pk: Mapped[int] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(String(512), default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class RouteRule(Base):
    """Forward instances to another archive: conditions, trigger, destination."""

    __tablename__ = "route_rule"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    name: Mapped[str] = mapped_column(String(64))
    # 'instance' (each stored instance) or 'study_complete'.
    trigger: Mapped[str] = mapped_column(String(16))
    modalities: Mapped[str] = mapped_column(Text, default="")
    # 'dicomweb' (STOW-RS to destination_url) or 'dimse' (C-STORE to ae_title@host:port).
    destination_kind: Mapped[str] = mapped_column(String(16))
    destination_url: Mapped[str] = mapped_column(String(2048), default="")
    # Authorization header value for the DICOMweb destination; never returned, never logged.
    destination_authorization: Mapped[str] = mapped_column(String(1024), default="")
    ae_title: Mapped[str] = mapped_column(String(16), default="")
    host: Mapped[str] = mapped_column(String(255), default="")
    port: Mapped[int] = mapped_column(Integer, default=0)
    calling_ae_title: Mapped[str] = mapped_column(String(16), default="TESSERA")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_seq: Mapped[int] = mapped_column(Seq, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RouteSource(Base):
    __tablename__ = "route_source"
    rule_pk: Mapped[int] = mapped_column(
        ForeignKey("route_rule.id", ondelete="CASCADE"), primary_key=True
    )
    source_pk: Mapped[int] = mapped_column(ForeignKey("source.id"), primary_key=True)


class RouteDelivery(Base):
    """One instance to send to one rule's destination."""

    __tablename__ = "route_delivery"
    __table_args__ = (
        UniqueConstraint("rule_pk", "sop_instance_uid"),
        Index("ix_route_delivery_due", "status", "next_attempt_at"),
        Index("ix_route_delivery_rule_study", "rule_pk", "study_instance_uid"),
    )
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    rule_pk: Mapped[int] = mapped_column(ForeignKey("route_rule.id", ondelete="CASCADE"))
    source_pk: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(String(512), default="")


class NotificationSubscription(Base):
    """A person's e-mail notification ("a study is ready"), read through their own Scope."""

    __tablename__ = "notification_subscription"
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    event_types: Mapped[str] = mapped_column(Text)
    last_seq: Mapped[int] = mapped_column(Seq, default=0)
    # Backoff after a failed send (the SMTP server is down): not before this time.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
