"""A tenant's sources (the labels every study carries): lookups, listing, adding, describing.

Every function takes a Connection inside the caller's transaction.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, select, update

from tessera.index.database import inserted_pk
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.models import Source

SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def source_pk_by_name(conn: Connection, tenant_id: int, name: str) -> int | None:
    return conn.execute(
        select(Source.id).where(Source.tenant_id == tenant_id, Source.name == name)
    ).scalar_one_or_none()


def source_pks(conn: Connection, tenant_id: int, names: list[str]) -> dict[str, int]:
    """Name -> key for each named source of the tenant; an unknown name is InvalidValue."""
    if not names:
        return {}
    found = {
        r.name: r.id
        for r in conn.execute(
            select(Source.name, Source.id).where(
                Source.tenant_id == tenant_id, Source.name.in_(names)
            )
        )
    }
    missing = sorted(set(names) - set(found))
    if missing:
        raise InvalidValue(f"unknown source(s): {', '.join(missing)}")
    return found


def source_names(conn: Connection, tenant_id: int, keys: frozenset[int]) -> list[str]:
    return list(
        conn.execute(
            select(Source.name).where(Source.tenant_id == tenant_id, Source.id.in_(list(keys)))
        ).scalars()
    )


def add_source(conn: Connection, tenant_id: int, name: str, description: str = "") -> int:
    """A new source of the tenant (Conflict when the name is taken)."""
    if not SOURCE_NAME_RE.match(name):
        raise InvalidValue("a source name is 1-64 letters, digits, '.', '_' or '-' (no spaces)")
    if source_pk_by_name(conn, tenant_id, name) is not None:
        raise Conflict(f"source {name!r} already exists")
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


def update_source(conn: Connection, tenant_id: int, name: str, description: str) -> None:
    result = conn.execute(
        update(Source)
        .where(Source.tenant_id == tenant_id, Source.name == name)
        .values(description=description)
    )
    if result.rowcount == 0:
        raise NotFound(f"no source {name!r}")
