"""The DIMSE registry in the index: the AE titles each tenant answers to, and the remote AEs
(peers) each tenant knows. auth/peers.py turns a peer into a Scope; scp/ never reads these
tables itself."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select

from tessera.index.database import inserted_pk
from tessera.index.models import DimseAeTitle, DimsePeer, DimsePeerQuerySource, Source, Tenant

# PS3.5 AE VR: up to 16 characters of the default repertoire, no backslash or control
# characters; leading/trailing spaces are not significant.
_AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class PeerError(ValueError):
    """A registry request that cannot be honoured (bad AE title, unknown source...)."""


def normalize_ae_title(ae_title: str) -> str:
    """The AE title as stored and compared: spaces trimmed, checked against the AE VR."""
    value = ae_title.strip()
    if not value or not _AE_TITLE_RE.match(value):
        raise PeerError(
            f"AE title {ae_title!r} is not 1-16 printable characters without a backslash"
        )
    return value


@dataclass(frozen=True)
class Peer:
    id: int
    tenant_id: int
    ae_title: str
    host: str
    port: int
    # None: labelled with the tenant's default source.
    upload_source_pk: int | None
    upload_source: str | None
    # Empty: every source of the tenant.
    query_source_pks: frozenset[int]
    query_sources: tuple[str, ...]
    may_store: bool
    may_query: bool
    may_be_move_destination: bool
    description: str
    # Its C-STOREs land in upload sessions (one per association and study) that a user of
    # the tenant commits or discards: a reviewed DICOM listener.
    staged: bool = False


# --- AE titles of the archive --------------------------------------------------------------


def tenant_for_called_ae_title(conn: Connection, ae_title: str) -> int | None:
    return conn.execute(
        select(DimseAeTitle.tenant_id).where(DimseAeTitle.ae_title == ae_title.strip())
    ).scalar_one_or_none()


def add_ae_title(conn: Connection, tenant_id: int, ae_title: str) -> None:
    title = normalize_ae_title(ae_title)
    if tenant_for_called_ae_title(conn, title) is not None:
        raise PeerError(f"AE title {title!r} is already in use")
    conn.execute(DimseAeTitle.__table__.insert().values(tenant_id=tenant_id, ae_title=title))


def remove_ae_title(conn: Connection, tenant_id: int, ae_title: str) -> bool:
    result = conn.execute(
        delete(DimseAeTitle).where(
            DimseAeTitle.tenant_id == tenant_id, DimseAeTitle.ae_title == ae_title.strip()
        )
    )
    return result.rowcount > 0


def list_ae_titles(conn: Connection) -> list[tuple[str, str]]:
    """(AE title, tenant name) for every registered AE title."""
    rows = conn.execute(
        select(DimseAeTitle.ae_title, Tenant.name)
        .join(Tenant, Tenant.id == DimseAeTitle.tenant_id)
        .order_by(DimseAeTitle.ae_title)
    )
    return [(row.ae_title, row.name) for row in rows]


# --- Peers ----------------------------------------------------------------------------------


def _source_pks(conn: Connection, tenant_id: int, names: list[str]) -> list[int]:
    pks = []
    for name in names:
        pk = conn.execute(
            select(Source.id).where(Source.tenant_id == tenant_id, Source.name == name)
        ).scalar_one_or_none()
        if pk is None:
            raise PeerError(f"unknown source {name!r}")
        pks.append(pk)
    return pks


def add_peer(
    conn: Connection,
    tenant_id: int,
    ae_title: str,
    host: str,
    port: int,
    upload_source: str | None = None,
    query_sources: list[str] | None = None,
    may_store: bool = True,
    may_query: bool = True,
    may_be_move_destination: bool = True,
    description: str = "",
    staged: bool = False,
) -> int:
    """Register a peer (or replace the one with this AE title in this tenant)."""
    title = normalize_ae_title(ae_title)
    if not 0 <= port <= 65535:
        raise PeerError(f"port {port} is not 0-65535")
    if not host.strip():
        raise PeerError("host is empty")
    upload_pk = _source_pks(conn, tenant_id, [upload_source])[0] if upload_source else None
    query_pks = _source_pks(conn, tenant_id, list(query_sources or []))
    remove_peer(conn, tenant_id, title)
    peer_pk = inserted_pk(
        conn.execute(
            DimsePeer.__table__.insert().values(
                tenant_id=tenant_id,
                ae_title=title,
                host=host.strip(),
                port=port,
                upload_source_pk=upload_pk,
                may_store=may_store,
                may_query=may_query,
                may_be_move_destination=may_be_move_destination,
                description=description,
                staged=staged,
            )
        )
    )
    for source_pk in sorted(set(query_pks)):
        conn.execute(
            DimsePeerQuerySource.__table__.insert().values(peer_pk=peer_pk, source_pk=source_pk)
        )
    return peer_pk


def remove_peer(conn: Connection, tenant_id: int, ae_title: str) -> bool:
    peer_pk = conn.execute(
        select(DimsePeer.id).where(
            DimsePeer.tenant_id == tenant_id, DimsePeer.ae_title == ae_title.strip()
        )
    ).scalar_one_or_none()
    if peer_pk is None:
        return False
    # Explicit: SQLite enforces ON DELETE CASCADE only with foreign keys on.
    conn.execute(delete(DimsePeerQuerySource).where(DimsePeerQuerySource.peer_pk == peer_pk))
    conn.execute(delete(DimsePeer).where(DimsePeer.id == peer_pk))
    return True


def peer_by_ae_title(conn: Connection, tenant_id: int, ae_title: str) -> Peer | None:
    peers = _peers(conn, tenant_id, ae_title.strip())
    return peers[0] if peers else None


def list_peers(conn: Connection, tenant_id: int) -> list[Peer]:
    return _peers(conn, tenant_id, None)


def _peers(conn: Connection, tenant_id: int, ae_title: str | None) -> list[Peer]:
    upload = Source.__table__.alias("upload_source")
    query = (
        select(*DimsePeer.__table__.c, upload.c.name.label("upload_source"))
        .outerjoin(upload, upload.c.id == DimsePeer.upload_source_pk)
        .where(DimsePeer.tenant_id == tenant_id)
        .order_by(DimsePeer.ae_title)
    )
    if ae_title is not None:
        query = query.where(DimsePeer.ae_title == ae_title)
    rows = conn.execute(query).all()
    if not rows:
        return []
    sources: dict[int, list[tuple[int, str]]] = {}
    for row in conn.execute(
        select(DimsePeerQuerySource.peer_pk, Source.id, Source.name)
        .join(Source, Source.id == DimsePeerQuerySource.source_pk)
        .where(DimsePeerQuerySource.peer_pk.in_([row.id for row in rows]))
        .order_by(Source.name)
    ):
        sources.setdefault(row.peer_pk, []).append((row.id, row.name))
    return [
        Peer(
            id=row.id,
            tenant_id=row.tenant_id,
            ae_title=row.ae_title,
            host=row.host,
            port=row.port,
            upload_source_pk=row.upload_source_pk,
            upload_source=row.upload_source,
            query_source_pks=frozenset(pk for pk, _ in sources.get(row.id, [])),
            query_sources=tuple(name for _, name in sources.get(row.id, [])),
            may_store=bool(row.may_store),
            may_query=bool(row.may_query),
            may_be_move_destination=bool(row.may_be_move_destination),
            description=row.description,
            staged=bool(row.staged),
        )
        for row in rows
    ]
