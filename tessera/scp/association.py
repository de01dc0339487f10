"""Association policy: who may associate, decided when the A-ASSOCIATE-RQ arrives.

The called AE title selects the tenant and the calling AE title must be a registered peer
of that tenant (unless TESSERA_DIMSE_ACCEPT_UNKNOWN is on). The resolved caller, with its
Scope, rides on the association for every handler that follows.
"""

from __future__ import annotations

import logging
import threading

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE

from tessera.archive import Archive
from tessera.auth.peers import AssociationRefused, DimseCaller, caller_for_association
from tessera.scp import audit
from tessera.scp.transport import acknowledge_promptly, disable_nagle

log = logging.getLogger(__name__)

_CALLER_ATTRIBUTE = "tessera_caller"
# A-ASSOCIATE-RJ: rejected-permanent, source "DICOM UL service-user".
_REJECTED_PERMANENT = 0x01
_REJECTED_TRANSIENT = 0x02
_SERVICE_USER = 0x01
_SERVICE_PROVIDER_PRESENTATION = 0x03
_LOCAL_LIMIT_EXCEEDED = 0x02
# Admission (count + mark) is atomic, so simultaneous requests cannot overshoot the limit.
_admission = threading.Lock()


def caller_of(assoc: Association) -> DimseCaller:
    caller = getattr(assoc, _CALLER_ATTRIBUTE, None)
    if caller is None:  # association policy handler did not run: refuse everything
        raise PermissionError("association has no resolved caller")
    return caller


def handle_requested(event: evt.Event, archive: Archive) -> None:
    """EVT_REQUESTED: resolve the AE titles, or reject the association before negotiation."""
    assoc = event.assoc
    request = assoc.requestor.primitive
    if not isinstance(request, A_ASSOCIATE):
        # The connection closed or aborted before any A-ASSOCIATE-RQ arrived.
        assoc.kill()
        return
    disable_nagle(assoc)
    acknowledge_promptly(assoc)
    calling = str(request.calling_ae_title or "")
    called = str(request.called_ae_title or "")
    settings = archive.settings
    address = assoc.requestor.address
    try:
        with archive.database.read() as conn:
            caller = caller_for_association(
                conn,
                calling,
                called,
                settings.dimse_aet,
                archive.default_tenant.id,
                settings.dimse_accept_unknown,
            )
    except AssociationRefused as exc:
        log.warning(
            "association rejected: %s",
            exc,
            extra={"calling_ae_title": calling, "called_ae_title": called, "peer": address},
        )
        audit.record_refused_association(archive, assoc, calling, called, str(exc))
        assoc.acse.send_reject(_REJECTED_PERMANENT, _SERVICE_USER, exc.diagnostic)
        assoc.kill()
        return
    except Exception:
        # The index is unreachable: a transient rejection, the peer may retry.
        log.exception("association policy lookup failed")
        assoc.acse.send_reject(_REJECTED_TRANSIENT, _SERVICE_USER, 0x01)
        assoc.kill()
        return
    with _admission:
        # Only admitted associations count: a connection that never sends a valid
        # A-ASSOCIATE-RQ (a port scan, garbage) must not take a real peer's place.
        admitted = sum(
            1
            for other in assoc.ae.active_associations
            if other.is_acceptor and getattr(other, _CALLER_ATTRIBUTE, None) is not None
        )
        if admitted >= settings.dimse_max_associations:
            log.warning(
                "association rejected: too many associations",
                extra={"calling_ae_title": calling, "limit": settings.dimse_max_associations},
            )
            assoc.acse.send_reject(
                _REJECTED_TRANSIENT, _SERVICE_PROVIDER_PRESENTATION, _LOCAL_LIMIT_EXCEEDED
            )
            assoc.kill()
            return
        setattr(assoc, _CALLER_ATTRIBUTE, caller)
    # Answer with the AE title the peer called (one listener serves several tenants).
    assoc.acceptor.ae_title = caller.called_ae_title
    log.info(
        "association requested",
        extra={
            "calling_ae_title": calling,
            "called_ae_title": called,
            "tenant_id": caller.tenant_id,
            "registered_peer": caller.peer is not None,
            "peer": address,
        },
    )
