"""Links between identities: a person (master patient) is a connected group of identities.

The confirmed links are edges (`patient_link`, low pk first); every identity of a group of two
or more carries `person_pk` = the lowest patient pk of the group, and an identity linked to
nothing carries NULL. Both are a pure function of the edges, recomputed for the touched
groups after each change, so unlinking restores exactly the state before the link. Every
change is a `patient_link_event` row (history), written in the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, or_, select, update

from tessera.index.clock import iso
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.identity_models import PatientLink, PatientLinkEvent
from tessera.index.models import Patient, Tenant


class LinkError(InvalidValue):
    """A link that cannot be made (the same identity twice, another tenant's identity)."""


class AlreadyLinked(Conflict):
    pass


class NotLinked(NotFound):
    pass


def link(
    conn: Connection, tenant_id: int, a_pk: int, b_pk: int, principal: str, reason: str = ""
) -> None:
    """Link two identities of the tenant (the caller checked both are visible to it)."""
    if a_pk == b_pk:
        raise LinkError("an identity cannot be linked to itself")
    serialize(conn, tenant_id)
    low, high = sorted((a_pk, b_pk))
    found = conn.execute(
        select(Patient.id).where(Patient.tenant_id == tenant_id, Patient.id.in_([low, high]))
    ).all()
    if len(found) != 2:
        raise LinkError("both identities must belong to this tenant")
    if _edge(conn, low, high) is not None:
        raise AlreadyLinked("these identities are already linked")
    conn.execute(
        PatientLink.__table__.insert().values(
            tenant_id=tenant_id, patient_pk_low=low, patient_pk_high=high, created_by=principal
        )
    )
    _record(conn, tenant_id, "link", low, high, principal, reason)
    _regroup(conn, tenant_id, [low])


def unlink(
    conn: Connection, tenant_id: int, a_pk: int, b_pk: int, principal: str, reason: str = ""
) -> None:
    serialize(conn, tenant_id)
    low, high = sorted((a_pk, b_pk))
    edge = _edge(conn, low, high)
    if edge is None:
        raise NotLinked("these identities are not linked")
    conn.execute(delete(PatientLink).where(PatientLink.id == edge))
    _record(conn, tenant_id, "unlink", low, high, principal, reason)
    _regroup(conn, tenant_id, [low, high])


def history(conn: Connection, tenant_id: int, patient_pks: list[int]) -> list[dict[str, object]]:
    """Link events naming any of the given identities, newest first."""
    rows = conn.execute(
        select(PatientLinkEvent)
        .where(
            PatientLinkEvent.tenant_id == tenant_id,
            or_(
                PatientLinkEvent.patient_pk_low.in_(patient_pks),
                PatientLinkEvent.patient_pk_high.in_(patient_pks),
            ),
        )
        .order_by(PatientLinkEvent.id.desc())
    ).all()
    return [
        {
            "action": row.action,
            "identities": [row.patient_pk_low, row.patient_pk_high],
            "principal": row.principal,
            "reason": row.reason,
            "at": iso(row.created_at),
        }
        for row in rows
    ]


def serialize(conn: Connection, tenant_id: int) -> None:
    """One identity change (link, correction, move, merge) at a time per tenant (PostgreSQL: lock the tenant row; SQLite's write
    transaction already serializes), so concurrent changes never compute groups from a stale
    view of the edges."""
    conn.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


def _edge(conn: Connection, low: int, high: int) -> int | None:
    return conn.execute(
        select(PatientLink.id).where(
            PatientLink.patient_pk_low == low, PatientLink.patient_pk_high == high
        )
    ).scalar_one_or_none()


def _record(
    conn: Connection, tenant_id: int, action: str, low: int, high: int, principal: str, reason: str
) -> None:
    conn.execute(
        PatientLinkEvent.__table__.insert().values(
            tenant_id=tenant_id,
            action=action,
            patient_pk_low=low,
            patient_pk_high=high,
            principal=principal[:128],
            reason=reason[:256],
        )
    )


def _group(conn: Connection, start: int) -> set[int]:
    """The identities connected to `start` through links (breadth first over the edges)."""
    seen = {start}
    frontier = [start]
    while frontier:
        rows = conn.execute(
            select(PatientLink.patient_pk_low, PatientLink.patient_pk_high).where(
                or_(
                    PatientLink.patient_pk_low.in_(frontier),
                    PatientLink.patient_pk_high.in_(frontier),
                )
            )
        ).all()
        frontier = [pk for row in rows for pk in row if pk not in seen]
        seen.update(frontier)
    return seen


def _regroup(conn: Connection, tenant_id: int, starts: list[int]) -> None:
    done: set[int] = set()
    for start in starts:
        if start in done:
            continue
        group = _group(conn, start)
        done |= group
        person = min(group) if len(group) > 1 else None
        conn.execute(
            update(Patient)
            .where(Patient.tenant_id == tenant_id, Patient.id.in_(sorted(group)))
            .values(person_pk=person)
        )
