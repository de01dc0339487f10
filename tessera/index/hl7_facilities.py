"""HL7 v2 senders: which tenant and source a message belongs to, by MSH-4 (sending
facility, its first component) and optionally MSH-3 (sending application). One listener
serves the deployment, so the mapping is global and unique; an administrator of the
deployment sets it (`tessera hl7 facilities ...`). A message from a facility not listed is
refused (AR), so it can never land in some default tenant."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Select, delete, or_, select

from tessera.index.errors import Conflict, NotFound
from tessera.index.models import Source, Tenant
from tessera.index.workflow_models import Hl7Facility

FACILITY = Hl7Facility.__table__


@dataclass(frozen=True)
class Facility:
    sending_facility: str
    sending_application: str  # '' = any
    tenant_id: int
    tenant: str
    source_pk: int
    source: str


def _select() -> Select:
    return (
        select(
            FACILITY.c.sending_facility,
            FACILITY.c.sending_application,
            FACILITY.c.tenant_id,
            Tenant.name.label("tenant"),
            FACILITY.c.source_pk,
            Source.name.label("source"),
        )
        .join(Tenant, Tenant.id == FACILITY.c.tenant_id)
        .join(Source, Source.id == FACILITY.c.source_pk)
    )


def resolve_facility(conn: Connection, facility: str, application: str) -> Facility | None:
    """The mapping for MSH-4 / MSH-3: an exact application match first, else the facility's
    any-application row."""
    rows = conn.execute(
        _select().where(
            FACILITY.c.sending_facility == facility,
            or_(
                FACILITY.c.sending_application == application,
                FACILITY.c.sending_application == "",
            ),
        )
    ).all()
    best = sorted(rows, key=lambda row: row.sending_application == "")
    return Facility(**best[0]._mapping) if best else None


def list_facilities(conn: Connection) -> list[Facility]:
    rows = conn.execute(
        _select().order_by(FACILITY.c.sending_facility, FACILITY.c.sending_application)
    )
    return [Facility(**row._mapping) for row in rows]


def add_facility(
    conn: Connection, facility: str, application: str, tenant_id: int, source_pk: int
) -> None:
    if not facility or len(facility) > 227 or len(application) > 227:
        raise ValueError("a sending facility is 1-227 characters (MSH-4)")
    taken = conn.execute(
        select(FACILITY.c.id).where(
            FACILITY.c.sending_facility == facility,
            FACILITY.c.sending_application == application,
        )
    ).first()
    if taken is not None:
        raise Conflict(f"sending facility {facility!r} application {application!r} is mapped")
    conn.execute(
        FACILITY.insert().values(
            sending_facility=facility,
            sending_application=application,
            tenant_id=tenant_id,
            source_pk=source_pk,
        )
    )


def remove_facility(conn: Connection, facility: str, application: str) -> None:
    removed = conn.execute(
        delete(FACILITY).where(
            FACILITY.c.sending_facility == facility,
            FACILITY.c.sending_application == application,
        )
    ).rowcount
    if not removed:
        raise NotFound(f"no sending facility {facility!r} application {application!r}")
