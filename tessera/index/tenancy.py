"""Tenants and sources as the index sees them: lookups and the default tenant bootstrap."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, select

from tessera.index.database import inserted_pk
from tessera.index.models import DEFAULT_SOURCE, DEFAULT_TENANT, Source, Tenant

SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class TenantInfo:
    id: int
    name: str
    duplicate_policy: str


def ensure_default_tenant(conn: Connection) -> TenantInfo:
    """Create the default tenant and its default source if this is a fresh index."""
    tenant = tenant_by_name(conn, DEFAULT_TENANT)
    if tenant is None:
        tenant_id = inserted_pk(
            conn.execute(
                Tenant.__table__.insert().values(name=DEFAULT_TENANT, duplicate_policy="reject")
            )
        )
        conn.execute(
            Source.__table__.insert().values(
                tenant_id=tenant_id, name=DEFAULT_SOURCE, description="Uploads with no source given"
            )
        )
        return TenantInfo(tenant_id, DEFAULT_TENANT, "reject")
    return tenant


def tenant_by_name(conn: Connection, name: str) -> TenantInfo | None:
    row = conn.execute(
        select(Tenant.id, Tenant.name, Tenant.duplicate_policy).where(Tenant.name == name)
    ).first()
    return None if row is None else TenantInfo(row.id, row.name, row.duplicate_policy)


def duplicate_policy(conn: Connection, tenant_id: int) -> str:
    return conn.execute(select(Tenant.duplicate_policy).where(Tenant.id == tenant_id)).scalar_one()


def source_pk_by_name(conn: Connection, tenant_id: int, name: str) -> int | None:
    return conn.execute(
        select(Source.id).where(Source.tenant_id == tenant_id, Source.name == name)
    ).scalar_one_or_none()


def add_source(conn: Connection, tenant_id: int, name: str, description: str = "") -> int:
    if not SOURCE_NAME_RE.match(name):
        raise ValueError("a source name is 1-64 letters, digits, '.', '_' or '-' (no spaces)")
    return inserted_pk(
        conn.execute(
            Source.__table__.insert().values(
                tenant_id=tenant_id, name=name, description=description
            )
        )
    )


def list_sources(conn: Connection, tenant_id: int) -> list[tuple[str, str]]:
    return [
        (row.name, row.description)
        for row in conn.execute(
            select(Source.name, Source.description)
            .where(Source.tenant_id == tenant_id)
            .order_by(Source.name)
        )
    ]


def set_duplicate_policy(conn: Connection, tenant_id: int, policy: str) -> None:
    if policy not in ("reject", "overwrite"):
        raise ValueError("duplicate policy is 'reject' or 'overwrite'")
    conn.execute(
        Tenant.__table__.update().where(Tenant.id == tenant_id).values(duplicate_policy=policy)
    )
