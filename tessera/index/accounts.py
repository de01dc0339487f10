"""Account tables: users, custom roles, per-user source lists, API keys / session tokens,
and the audit trail. Registered on the index's Base; migration 0004 creates them.

Secrets are never stored: passwords as argon2 hashes, tokens as SHA-256 of 256-bit random
values (a KDF adds nothing for high-entropy secrets and would slow every request).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from tessera.index.models import Base, Key


class AppUser(Base):
    # "user" is reserved in PostgreSQL.
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    username: Mapped[str] = mapped_column(String(64))
    # argon2id hash; NULL: no password login (API keys / OIDC only).
    password_hash: Mapped[str | None] = mapped_column(String(256))
    # A built-in role name (tessera.auth.roles) or a custom role of the tenant.
    role: Mapped[str] = mapped_column(String(64))
    # May manage tenants (the system administrator).
    is_system_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomRole(Base):
    __tablename__ = "custom_role"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    name: Mapped[str] = mapped_column(String(64))
    # Space-separated permission names (tessera.auth.permissions).
    permissions: Mapped[str] = mapped_column(String(512), default="")
    description: Mapped[str] = mapped_column(String(256), default="")


class UserSource(Base):
    """A user's source list: kind 'read' (what they see; none = all of the tenant) and kind
    'upload' (what they may label uploads with; none = any of the tenant's sources)."""

    __tablename__ = "user_source"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)


class ApiToken(Base):
    """Bearer credentials: long-lived API keys (kind 'api_key') and login sessions
    (kind 'session'). Only the SHA-256 of the secret is kept."""

    __tablename__ = "api_token"
    __table_args__ = (Index("ix_api_token_user", "user_id"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, so a person can recognise a key in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_tenant_at", "tenant_id", "at"),)
    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    # NULL: not attributable to a tenant (e.g. a request for an unknown tenant).
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    principal: Mapped[str] = mapped_column(String(160))
    # login, logout, upload, query, retrieve, admin.<object>.<verb>, denied
    action: Mapped[str] = mapped_column(String(64))
    # ok, denied, failed
    outcome: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(512), default="")
    # JSON object with details (never secrets).
    detail: Mapped[str] = mapped_column(Text, default="{}")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
