"""The DIMSE listener: one pynetdicom AE serving every tenant's AE titles.

`tessera serve` runs it in a background thread next to the HTTP server; `tessera scp` runs
it alone (scale-out: HTTP and DIMSE processes over the same index and blob store).
"""

from __future__ import annotations

import logging

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from tessera.archive import Archive
from tessera.scp import association, mpps, mwl, retrieve, store
from tessera.scp import find as find_handler
from tessera.scp.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tessera.scp.tls import server_tls_context
from tessera.scp.transport import count_sending_as_activity

log = logging.getLogger(__name__)

# Every storage SOP class (and private or unknown ones) is accepted with the first transfer
# syntax the peer proposes: the archive stores data sets as received, whatever the syntax.
_config.UNRESTRICTED_STORAGE_SERVICE = True
# A C-STORE's data set goes to a temporary file as it arrives, not into memory
# (scp/store.py copies it to the spool folder from there).
_config.STORE_RECV_CHUNKED_DATASET = True
# Identifiers in C-FIND requests are not logged (they hold patient data).
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

QUERY_RETRIEVE_SOP_CLASSES = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)
# Scheduled workflow: the Modality Worklist and MPPS (docs/orders.md).
WORKFLOW_SOP_CLASSES = (ModalityWorklistInformationFind, ModalityPerformedProcedureStep)
NON_STORAGE_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
# Largest PDU we receive; larger PDUs mean fewer round trips per data set.
MAX_PDU_BYTES = 1024 * 1024


def build_ae(archive: Archive) -> AE:
    settings = archive.settings
    ae = AE(ae_title=settings.dimse_aet)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    # The configured limit is enforced on admitted associations (scp/association.py); this
    # cap only bounds the threads that connections not yet associated can hold.
    ae.maximum_associations = max(64, 4 * settings.dimse_max_associations)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    # A connection must send its A-ASSOCIATE-RQ within this many seconds.
    ae.acse_timeout = 10
    ae.dimse_timeout = 120
    ae.network_timeout = 120
    ae.add_supported_context(Verification, NON_STORAGE_TRANSFER_SYNTAXES)
    for sop_class in (*QUERY_RETRIEVE_SOP_CLASSES, *WORKFLOW_SOP_CLASSES):
        ae.add_supported_context(sop_class, NON_STORAGE_TRANSFER_SYNTAXES)
    return ae


def event_handlers(archive: Archive) -> list:
    return [
        (evt.EVT_REQUESTED, association.handle_requested, [archive]),
        (evt.EVT_C_ECHO, _handle_echo),
        (evt.EVT_C_STORE, store.handle_store, [archive]),
        (evt.EVT_C_FIND, _handle_find, [archive]),
        (evt.EVT_C_MOVE, retrieve.handle_move, [archive]),
        (evt.EVT_C_GET, retrieve.handle_get, [archive]),
        (evt.EVT_N_CREATE, mpps.handle_n_create, [archive]),
        (evt.EVT_N_SET, mpps.handle_n_set, [archive]),
        (evt.EVT_DIMSE_SENT, count_sending_as_activity),
    ]


def _handle_find(event: evt.Event, archive: Archive):
    """C-FIND: the worklist, or a Query/Retrieve information model."""
    if str(event.request.AffectedSOPClassUID) == ModalityWorklistInformationFind:
        return mwl.handle_worklist_find(event, archive)
    return find_handler.handle_find(event, archive)


def _handle_echo(event: evt.Event) -> int:
    association.caller_of(event.assoc)
    return 0x0000


def start_listener(archive: Archive, block: bool = False) -> ThreadedAssociationServer | None:
    """Bind the DIMSE port and serve (in background threads unless `block`).

    Raises OSError when the port cannot be bound.
    """
    settings = archive.settings
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    ae = build_ae(archive)
    tls = server_tls_context(settings)
    log.info(
        "DIMSE listener starting",
        extra={
            "host": settings.host,
            "dimse_port": settings.dimse_port,
            "ae_title": settings.dimse_aet,
            "tls": tls is not None,
            "accept_unknown": settings.dimse_accept_unknown,
        },
    )
    return ae.start_server(
        (settings.host, settings.dimse_port),
        block=block,
        evt_handlers=event_handlers(archive),
        ssl_context=tls,
    )
