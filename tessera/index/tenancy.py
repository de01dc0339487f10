"""Tenants as the index sees them: lookups, creation, the default tenant bootstrap, the
duplicate policy.

Every function takes a Connection inside the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, select

from tessera.index.database import inserted_pk
from tessera.index.errors import Conflict, InvalidValue
from tessera.index.models import DEFAULT_SOURCE, DEFAULT_TENANT, Source, Tenant

# Lower-case, URL-safe, and never a word the URL scheme uses (/t/{tenant}/dicomweb).
TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
RESERVED_TENANT_NAMES = frozenset({"dicomweb", "api", "t", "healthz", "wado"})


@dataclass(frozen=True)
class TenantInfo:
    id: int
    name: str
    duplicate_policy: str


def _insert_tenant(conn: Connection, name: str) -> TenantInfo:
    """The tenant row and its default source (uploads that name no source)."""
    tenant_id = inserted_pk(
        conn.execute(Tenant.__table__.insert().values(name=name, duplicate_policy="reject"))
    )
    conn.execute(
        Source.__table__.insert().values(
            tenant_id=tenant_id, name=DEFAULT_SOURCE, description="Uploads with no source given"
        )
    )
    return TenantInfo(tenant_id, name, "reject")


def ensure_default_tenant(conn: Connection) -> TenantInfo:
    """Create the default tenant and its default source if this is a fresh index."""
    tenant = tenant_by_name(conn, DEFAULT_TENANT)
    return tenant if tenant is not None else _insert_tenant(conn, DEFAULT_TENANT)


def create_tenant(conn: Connection, name: str) -> TenantInfo:
    if not TENANT_NAME_RE.match(name) or name in RESERVED_TENANT_NAMES:
        raise InvalidValue(
            "a tenant name is 1-64 lower-case letters, digits, '_' or '-' "
            f"(and not one of {', '.join(sorted(RESERVED_TENANT_NAMES))})"
        )
    if tenant_by_name(conn, name) is not None:
        raise Conflict(f"tenant {name!r} already exists")
    return _insert_tenant(conn, name)


def list_tenants(conn: Connection) -> list[TenantInfo]:
    rows = conn.execute(
        select(Tenant.id, Tenant.name, Tenant.duplicate_policy).order_by(Tenant.name)
    )
    return [TenantInfo(r.id, r.name, r.duplicate_policy) for r in rows]


def tenant_by_name(conn: Connection, name: str) -> TenantInfo | None:
    row = conn.execute(
        select(Tenant.id, Tenant.name, Tenant.duplicate_policy).where(Tenant.name == name)
    ).first()
    return None if row is None else TenantInfo(row.id, row.name, row.duplicate_policy)


def duplicate_policy(conn: Connection, tenant_id: int) -> str:
    return conn.execute(select(Tenant.duplicate_policy).where(Tenant.id == tenant_id)).scalar_one()


def set_duplicate_policy(conn: Connection, tenant_id: int, policy: str) -> None:
    if policy not in ("reject", "overwrite"):
        raise InvalidValue("duplicate policy is 'reject' or 'overwrite'")
    conn.execute(
        Tenant.__table__.update().where(Tenant.id == tenant_id).values(duplicate_policy=policy)
    )
