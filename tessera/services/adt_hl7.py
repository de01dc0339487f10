"""HL7 v2 ADT over the MLLP listener: ADT^A01/A04/A08/A40/A47/A24/A37 handlers for
tessera.hl7.listener, registered when this module is imported (name it in the listener's
`HANDLER_MODULES`, as orders do with tessera.hl7.orm).

A message acts for its sender's facility: its tenant, and only that source's data (a
source-locked scope with the `identity` permission): it changes an identity only when every
study of it came from that source (tessera.index.identity_changes), so a site's feed never
touches, nor learns of, another site's identities. PID-3 without an assigning authority
takes the source's default issuer. The message itself is applied by tessera.services.adt;
errors answer AE: an unknown identity (or one of another site) ERR 204, a missing segment
or field 101, a malformed value 102, a conflict (merged away, key taken) 207.
"""

from __future__ import annotations

from sqlalchemy import select

from tessera.archive import Archive
from tessera.hl7.listener import (
    APPLICATION_ERROR,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    UNKNOWN_KEY,
    Hl7Reject,
    Inbound,
    register,
)
from tessera.hl7.message import parse
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.models import Source
from tessera.scope import Scope
from tessera.services.adt import EVENTS, AdtError, apply_adt


def handle_adt(archive: Archive, inbound: Inbound) -> str:
    facility = inbound.facility
    only = frozenset({facility.source_pk})
    scope = Scope(
        tenant_id=facility.tenant_id,
        source_pks=only,
        upload_source_pks=only,
        permissions=frozenset({"read", "identity"}),
        principal=f"hl7:{facility.sending_facility}",
    )
    with archive.database.read() as conn:
        issuer = conn.execute(
            select(Source.default_issuer_of_patient_id).where(Source.id == facility.source_pk)
        ).scalar_one()
    segments = parse(str(inbound.message).encode("utf-8"))
    try:
        return apply_adt(archive, scope, segments, issuer).text
    except AdtError as exc:
        if exc.unknown_key:
            code = UNKNOWN_KEY
        elif "no " in str(exc) or "needs" in str(exc):
            code = REQUIRED_FIELD_MISSING
        else:
            code = DATA_TYPE_ERROR
        raise Hl7Reject(str(exc), "AE", code, exc.location) from None
    except NotFound as exc:
        raise Hl7Reject(str(exc), "AE", UNKNOWN_KEY, "PID-3") from None
    except Conflict as exc:
        raise Hl7Reject(str(exc), "AE", APPLICATION_ERROR) from None
    except InvalidValue as exc:
        raise Hl7Reject(str(exc), "AE", DATA_TYPE_ERROR) from None


def register_handlers() -> None:
    """Register every ADT event handled (done when the module is imported)."""
    for event in EVENTS:
        register(f"ADT^{event}", handle_adt)


register_handlers()
