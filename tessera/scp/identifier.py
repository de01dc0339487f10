"""Request identifiers of C-FIND, C-MOVE and C-GET: decoding and the keys a retrieve needs."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
)

from tessera.storage.uids import is_valid_uid

PATIENT_ROOT = frozenset(
    {
        str(PatientRootQueryRetrieveInformationModelFind),
        str(PatientRootQueryRetrieveInformationModelMove),
        str(PatientRootQueryRetrieveInformationModelGet),
    }
)
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


class IdentifierError(ValueError):
    """The identifier cannot be honoured; answered with a failure status and this comment."""


def decode_identifier(event: evt.Event) -> Dataset:
    try:
        identifier = event.identifier
        # pydicom decodes lazily: touch every element now so errors surface here.
        for _element in identifier:
            pass
    except Exception as exc:
        raise IdentifierError(f"identifier cannot be decoded: {exc}") from exc
    return identifier


def query_level(identifier: Dataset, sop_class_uid: str) -> str:
    """The Query/Retrieve Level, checked against the information model."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS:
        raise IdentifierError(f"QueryRetrieveLevel {level!r} is not one of {', '.join(LEVELS)}")
    if level == "PATIENT" and sop_class_uid not in PATIENT_ROOT:
        raise IdentifierError("PATIENT level needs the Patient Root information model")
    return level


def _text(identifier: Dataset, keyword: str) -> str:
    try:
        value = identifier.get(keyword)
    except Exception as exc:
        raise IdentifierError(f"{keyword} cannot be read: {exc}") from exc
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _uid_list(identifier: Dataset, keyword: str, required: bool) -> list[str]:
    raw = _text(identifier, keyword)
    uids = [uid.strip() for uid in raw.split("\\") if uid.strip()]
    if required and not uids:
        raise IdentifierError(f"{keyword} is required at this level")
    for uid in uids:
        if not is_valid_uid(uid):
            raise IdentifierError(f"{keyword} {uid!r} is not a valid UID")
    return uids


@dataclass(frozen=True)
class RetrieveKeys:
    level: str
    # Patient level: the Patient ID whose studies are retrieved; study_uids is None then.
    patient_id: str | None
    study_uids: list[str] | None
    series_uids: list[str]
    sop_instance_uids: list[str]


def retrieve_keys(identifier: Dataset, sop_class_uid: str) -> RetrieveKeys:
    """The unique keys of a C-MOVE / C-GET identifier (PS3.4 C.4.2.2.1, C.4.3.2.1)."""
    level = query_level(identifier, sop_class_uid)
    if level == "PATIENT":
        patient_id = _text(identifier, "PatientID")
        if not patient_id or "*" in patient_id or "?" in patient_id or "\\" in patient_id:
            raise IdentifierError("PATIENT level needs one PatientID (no wildcards)")
        return RetrieveKeys(level, patient_id, None, [], [])
    return RetrieveKeys(
        level,
        None,
        _uid_list(identifier, "StudyInstanceUID", required=level == "STUDY"),
        _uid_list(identifier, "SeriesInstanceUID", required=level == "SERIES"),
        _uid_list(identifier, "SOPInstanceUID", required=level == "IMAGE"),
    )


_TEXT_VRS = ("PN", "LO", "SH", "LT", "ST", "UT", "UC")


def declare_character_set(response: Dataset) -> None:
    """A C-FIND response (query or worklist) with any non-ASCII text, in sequences too,
    says it is UTF-8 (Specific Character Set ISO_IR 192): the values come from the index as
    Python text, and the encoder writes them in the declared set."""
    for element in response.iterall():
        if element.VR in _TEXT_VRS and element.value and not str(element.value).isascii():
            response.SpecificCharacterSet = "ISO_IR 192"
            return
