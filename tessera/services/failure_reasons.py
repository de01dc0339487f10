"""Failure Reason (0008,1197) of an instance that was not stored: chosen here, by the ingest
service, for STOW-RS and C-STORE alike (scp/statuses.py maps them to C-STORE statuses).

Values from PS3.18 Table I.2-2; the Cxxx and A9xx ones are ours within the ranges the
standard reserves, documented in conformance/CONFORMANCE.md.
"""

from __future__ import annotations

from tessera.storage.parse import Defect

CANNOT_UNDERSTAND = 0xC000
NOT_PART10 = 0xC001
TRUNCATED = 0xC002
# STOW-RS only: a part whose media type is not application/dicom.
WRONG_MEDIA_TYPE = 0xC003
STUDY_UID_MISMATCH = 0xC409
SERIES_IN_OTHER_STUDY = 0xC410
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
MISSING_OR_INVALID_UID = 0xA900
DUPLICATE_CONFLICT = 0x0111
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
SOURCE_NOT_ALLOWED = 0xC411
# The study, series or instance already holds data of sources the uploader cannot see.
UID_NOT_AVAILABLE = 0xC412
# The instance does not fit the order its upload named (another patient, another study).
ORDER_MISMATCH = 0xC413

# What the parser found wrong with the bytes -> the Failure Reason.
_OF_DEFECT = {
    Defect.UNPARSABLE: CANNOT_UNDERSTAND,
    Defect.NOT_PART10: NOT_PART10,
    Defect.TRUNCATED: TRUNCATED,
    Defect.MISSING_OR_INVALID_UID: MISSING_OR_INVALID_UID,
    Defect.NO_TRANSFER_SYNTAX: TRANSFER_SYNTAX_NOT_SUPPORTED,
}


def of_defect(defect: Defect) -> int:
    """The Failure Reason of a file the parser refused."""
    return _OF_DEFECT[defect]
