"""A tenant's sources (the labels every study carries): lookups, listing, adding, describing.

Every function takes a Connection inside the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import replace

from sqlalchemy import Connection, select, update

from tessera.index.database import inserted_pk
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.models import Source, Study, StudySource
from tessera.scope import Scope

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


def source_descriptions(
    conn: Connection, tenant_id: int, keys: frozenset[int] | None
) -> dict[str, str]:
    """Name -> description of the tenant's sources among `keys` (None: every source)."""
    query = select(Source.name, Source.description).where(Source.tenant_id == tenant_id)
    if keys is not None:
        query = query.where(Source.id.in_(sorted(keys)))
    return {row.name: row.description for row in conn.execute(query.order_by(Source.name))}


def study_sources(conn: Connection, scope: Scope, study_instance_uid: str) -> list[dict[str, str]]:
    """The sources of a study's instances the caller may see, with their descriptions, by
    name; NotFound when the caller sees no instance of it (another tenant's UID, a study of
    hidden sources only, no such study: the same answer)."""
    query = (
        select(Source.name, Source.description)
        .join(StudySource, StudySource.source_pk == Source.id)
        .join(Study, Study.id == StudySource.study_pk)
        .where(Study.tenant_id == scope.tenant_id, Study.study_instance_uid == study_instance_uid)
        .order_by(Source.name)
    )
    if scope.source_pks is not None:
        query = query.where(StudySource.source_pk.in_(sorted(scope.source_pks)))
    found = [{"name": row.name, "description": row.description} for row in conn.execute(query)]
    if not found:
        raise NotFound(f"no study {study_instance_uid}")
    return found


def add_source(
    conn: Connection,
    tenant_id: int,
    name: str,
    description: str = "",
    default_issuer_of_patient_id: str = "",
) -> int:
    """A new source of the tenant (Conflict when the name is taken)."""
    if not SOURCE_NAME_RE.match(name):
        raise InvalidValue("a source name is 1-64 letters, digits, '.', '_' or '-' (no spaces)")
    check_issuer_of_patient_id(default_issuer_of_patient_id)
    if source_pk_by_name(conn, tenant_id, name) is not None:
        raise Conflict(f"source {name!r} already exists")
    return inserted_pk(
        conn.execute(
            Source.__table__.insert().values(
                tenant_id=tenant_id,
                name=name,
                description=description,
                default_issuer_of_patient_id=default_issuer_of_patient_id,
            )
        )
    )


def check_issuer_of_patient_id(issuer: str) -> None:
    """An Issuer of Patient ID is a DICOM LO value: at most 64 characters, no backslash, no
    control characters, no leading or trailing spaces (InvalidValue otherwise)."""
    if len(issuer) > 64:
        raise InvalidValue("an Issuer of Patient ID has at most 64 characters")
    if "\\" in issuer or any(ord(c) < 32 or ord(c) == 127 for c in issuer):
        raise InvalidValue("an Issuer of Patient ID has no backslash and no control characters")
    if issuer != issuer.strip():
        raise InvalidValue("an Issuer of Patient ID has no leading or trailing spaces")


def source_settings(conn: Connection, tenant_id: int) -> list[dict[str, str]]:
    """Every source of the tenant with its description and default issuer, by name."""
    return [
        {
            "name": row.name,
            "description": row.description,
            "default_issuer_of_patient_id": row.default_issuer_of_patient_id,
        }
        for row in conn.execute(
            select(Source.name, Source.description, Source.default_issuer_of_patient_id)
            .where(Source.tenant_id == tenant_id)
            .order_by(Source.name)
        )
    ]


def list_sources(conn: Connection, tenant_id: int) -> list[tuple[str, str]]:
    return [
        (row.name, row.description)
        for row in conn.execute(
            select(Source.name, Source.description)
            .where(Source.tenant_id == tenant_id)
            .order_by(Source.name)
        )
    ]


def update_source(conn: Connection, tenant_id: int, name: str, changes: dict[str, str]) -> None:
    """Change a source's `description` and/or `default_issuer_of_patient_id`."""
    if "default_issuer_of_patient_id" in changes:
        check_issuer_of_patient_id(changes["default_issuer_of_patient_id"])
    result = conn.execute(
        update(Source).where(Source.tenant_id == tenant_id, Source.name == name).values(**changes)
    )
    if result.rowcount == 0:
        raise NotFound(f"no source {name!r}")


def within_sources(conn: Connection, scope: Scope, names: list[str]) -> Scope:
    """`scope` narrowed to the instances received from the named sources (a search's
    `source=`). A name the tenant does not have, or one outside the caller's source lock,
    narrows to nothing: the answer is empty, never an error that tells hidden names apart."""
    keys = frozenset(
        conn.execute(
            select(Source.id).where(Source.tenant_id == scope.tenant_id, Source.name.in_(names))
        ).scalars()
    )
    if scope.source_pks is not None:
        keys = keys & scope.source_pks
    return replace(scope, source_pks=keys)
