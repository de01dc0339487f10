"""DIMSE callers: the called AE title selects the tenant, the calling AE title names a
registered peer, and the peer's registry entry becomes the Scope every DIMSE path applies
(the same Scope type, applied by the same index code, as DICOMweb)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from tessera.auth import permissions
from tessera.index.peers import Peer, peer_by_ae_title, tenant_for_called_ae_title
from tessera.index.sources import source_pk_by_name
from tessera.scope import Scope


class AssociationRefused(Exception):
    """The association is rejected; `diagnostic` is the A-ASSOCIATE-RJ reason (PS3.8 9.3.4):
    3 calling AE title not recognized, 7 called AE title not recognized."""

    CALLING_AE_NOT_RECOGNIZED = 0x03
    CALLED_AE_NOT_RECOGNIZED = 0x07

    def __init__(self, diagnostic: int, message: str) -> None:
        super().__init__(message)
        self.diagnostic = diagnostic


@dataclass(frozen=True)
class DimseCaller:
    """Who is on the other end of an association, and what they may do."""

    calling_ae_title: str
    called_ae_title: str
    tenant_id: int
    # None when an unregistered AE was let in (accept-unknown mode).
    peer: Peer | None
    scope: Scope
    # The source this caller's C-STOREs are labelled with.
    upload_source_pk: int


def caller_for_association(
    conn: Connection,
    calling_ae_title: str,
    called_ae_title: str,
    default_ae_title: str,
    default_tenant_id: int,
    accept_unknown: bool,
) -> DimseCaller:
    """Resolve an A-ASSOCIATE-RQ's AE titles; raise AssociationRefused to reject it."""
    calling = calling_ae_title.strip()
    called = called_ae_title.strip()
    tenant_id = tenant_for_called_ae_title(conn, called)
    if tenant_id is None and called == default_ae_title.strip():
        # The configured AE title (--dimse-aet) always names the default tenant.
        tenant_id = default_tenant_id
    if tenant_id is None:
        raise AssociationRefused(
            AssociationRefused.CALLED_AE_NOT_RECOGNIZED, f"unknown called AE title {called!r}"
        )
    peer = peer_by_ae_title(conn, tenant_id, calling)
    default_source_pk = source_pk_by_name(conn, tenant_id, "default")
    if peer is None:
        if not accept_unknown or default_source_pk is None:
            raise AssociationRefused(
                AssociationRefused.CALLING_AE_NOT_RECOGNIZED,
                f"calling AE title {calling!r} is not a registered peer",
            )
        scope = Scope(
            tenant_id=tenant_id,
            upload_source_pks=frozenset({default_source_pk}),
            permissions=frozenset({permissions.READ, permissions.UPLOAD}),
            principal=f"dimse:{calling}",
        )
        return DimseCaller(calling, called, tenant_id, None, scope, default_source_pk)
    return DimseCaller(
        calling,
        called,
        tenant_id,
        peer,
        scope_for_peer(peer, default_source_pk),
        peer.upload_source_pk or default_source_pk or 0,
    )


def scope_for_peer(peer: Peer, default_source_pk: int | None) -> Scope:
    """A registered peer's Scope: its query sources (none listed = all), its one upload
    source, and READ / UPLOAD as its registry flags allow."""
    granted = set()
    if peer.may_query:
        granted.add(permissions.READ)
    if peer.may_store:
        granted.add(permissions.UPLOAD)
    upload_pk = peer.upload_source_pk or default_source_pk
    return Scope(
        tenant_id=peer.tenant_id,
        source_pks=peer.query_source_pks or None,
        upload_source_pks=frozenset({upload_pk}) if upload_pk is not None else frozenset(),
        permissions=frozenset(granted),
        principal=f"dimse:{peer.ae_title}",
    )
