"""DIMSE status codes the gateway answers with (PS3.4 B.2.3, C.4; PS3.7 Annex C), and the
mapping from an ingest outcome to a C-STORE response."""

from __future__ import annotations

from pydicom.dataset import Dataset

from tessera.services import failure_reasons
from tessera.services.ingest import StoreOutcome

SUCCESS = 0x0000
PENDING = 0xFF00
# C-FIND pending when an optional key asked for is not supported (PS3.4 C.4.1.1.4).
PENDING_WARNING = 0xFF01
CANCEL = 0xFE00
# Sub-operations finished with failures or warnings.
SUBOPERATIONS_WARNING = 0xB000
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700
# C-FIND / C-MOVE / C-GET: Out of resources, unable to calculate number of matches.
OUT_OF_RESOURCES_MATCHES = 0xA701
# C-MOVE / C-GET: Out of resources, unable to perform sub-operations.
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
# Q/R identifier does not match SOP class (PS3.4 C.4.1.1.4): bad keys, level, values.
IDENTIFIER_DOES_NOT_MATCH = 0xA900

# Failure Reason (ingest) -> C-STORE status. Cxxx keeps its own code (all Cxxx mean "cannot
# understand", the low bits say why and are documented in conformance/CONFORMANCE.md).
_STORE_STATUS = {
    failure_reasons.MISSING_OR_INVALID_UID: DATASET_DOES_NOT_MATCH_SOP_CLASS,
    failure_reasons.OUT_OF_RESOURCES: OUT_OF_RESOURCES,
    failure_reasons.DUPLICATE_CONFLICT: DUPLICATE_SOP_INSTANCE,
    failure_reasons.PROCESSING_FAILURE: PROCESSING_FAILURE,
    failure_reasons.SOURCE_NOT_ALLOWED: NOT_AUTHORIZED,
}


def status_dataset(status: int, comment: str = "") -> Dataset:
    """A response status with an Error Comment (LO: at most 64 characters)."""
    response = Dataset()
    response.Status = status
    if comment:
        response.ErrorComment = comment.replace("\\", "/")[:64]
    return response


def store_status(outcome: StoreOutcome) -> Dataset:
    if outcome.stored:
        return status_dataset(SUCCESS)
    reason = outcome.failure_reason if outcome.failure_reason is not None else CANNOT_UNDERSTAND
    status = _STORE_STATUS.get(reason)
    if status is None:
        status = reason if 0xC000 <= reason <= 0xCFFF else CANNOT_UNDERSTAND
    return status_dataset(status, outcome.message)
