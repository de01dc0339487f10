"""The attributes the query engine knows: their level, VR, and the index column they live in.

One registry serves QIDO-RS and C-FIND. An attribute of a level can be matched at that level
and below (a series search may match on study attributes). Attributes marked `computed` are
derived from the hierarchy (counts, ModalitiesInStudy); `constant` ones have one value for
everything the archive holds (InstanceAvailability).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword


class Level(enum.IntEnum):
    """Query/Retrieve levels, in hierarchy order (a lower level has a larger value)."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    INSTANCE = 3

    @classmethod
    def from_dicom(cls, value: str) -> Level:
        """'PATIENT', 'STUDY', 'SERIES', 'IMAGE' or 'INSTANCE' (QueryRetrieveLevel)."""
        name = value.strip().upper()
        return cls.INSTANCE if name == "IMAGE" else cls[name]


@dataclass(frozen=True)
class Attribute:
    tag: int
    keyword: str
    vr: str
    level: Level
    # Column name in that level's table (None for computed/constant attributes).
    column: str | None = None
    # Computed from the hierarchy below (counts, value lists).
    computed: bool = False
    # Can be used as a matching key (computed counts cannot).
    matchable: bool = True
    # Multi-valued (returned as a list): ModalitiesInStudy, SOPClassesInStudy.
    multi: bool = False

    @property
    def tag_hex(self) -> str:
        return f"{self.tag:08X}"


def _a(keyword: str, level: Level, column: str | None = None, **kwargs: Any) -> Attribute:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Attribute(tag, keyword, dictionary_VR(tag), level, column, **kwargs)


P, ST, SE, IN = Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE

ATTRIBUTES: tuple[Attribute, ...] = (
    # Patient (on the patient table at PATIENT level, copied on the study row below it).
    _a("PatientName", P, "patient_name"),
    _a("PatientID", P, "patient_id"),
    _a("IssuerOfPatientID", P, "issuer_of_patient_id"),
    _a("PatientBirthDate", P, "patient_birth_date"),
    _a("PatientSex", P, "patient_sex"),
    _a("NumberOfPatientRelatedStudies", P, computed=True, matchable=False),
    _a("NumberOfPatientRelatedSeries", P, computed=True, matchable=False),
    _a("NumberOfPatientRelatedInstances", P, computed=True, matchable=False),
    # Study
    _a("StudyInstanceUID", ST, "study_instance_uid"),
    _a("StudyDate", ST, "study_date"),
    _a("StudyTime", ST, "study_time"),
    _a("AccessionNumber", ST, "accession_number"),
    _a("StudyID", ST, "study_id"),
    _a("StudyDescription", ST, "study_description"),
    _a("ReferringPhysicianName", ST, "referring_physician_name"),
    _a("TimezoneOffsetFromUTC", ST, "timezone_offset_from_utc"),
    _a("ModalitiesInStudy", ST, computed=True, multi=True),
    _a("SOPClassesInStudy", ST, computed=True, multi=True),
    _a("NumberOfStudyRelatedSeries", ST, computed=True, matchable=False),
    _a("NumberOfStudyRelatedInstances", ST, computed=True, matchable=False),
    # Series
    _a("SeriesInstanceUID", SE, "series_instance_uid"),
    _a("Modality", SE, "modality"),
    _a("SeriesNumber", SE, "series_number"),
    _a("SeriesDescription", SE, "series_description"),
    _a("SeriesDate", SE, "series_date"),
    _a("SeriesTime", SE, "series_time"),
    _a("BodyPartExamined", SE, "body_part_examined"),
    _a("PerformedProcedureStepStartDate", SE, "performed_procedure_step_start_date"),
    _a("PerformedProcedureStepStartTime", SE, "performed_procedure_step_start_time"),
    _a("NumberOfSeriesRelatedInstances", SE, computed=True, matchable=False),
    # Instance
    _a("SOPInstanceUID", IN, "sop_instance_uid"),
    _a("SOPClassUID", IN, "sop_class_uid"),
    _a("InstanceNumber", IN, "instance_number"),
    _a("Rows", IN, "rows"),
    _a("Columns", IN, "columns"),
    _a("BitsAllocated", IN, "bits_allocated"),
    _a("NumberOfFrames", IN, "number_of_frames"),
    _a("ContentDate", IN, "content_date"),
    _a("ContentTime", IN, "content_time"),
    _a("AcquisitionDateTime", IN, "acquisition_datetime"),
    _a("AvailableTransferSyntaxUID", IN, "transfer_syntax_uid"),
)

# Returned for every level with the same value; not matchable.
INSTANCE_AVAILABILITY = Attribute(0x00080056, "InstanceAvailability", "CS", ST, matchable=False)
RETRIEVE_URL = Attribute(0x00081190, "RetrieveURL", "UR", ST, matchable=False)
SPECIFIC_CHARACTER_SET = Attribute(0x00080005, "SpecificCharacterSet", "CS", P, matchable=False)

BY_TAG: dict[int, Attribute] = {a.tag: a for a in ATTRIBUTES}
BY_KEYWORD: dict[str, Attribute] = {a.keyword: a for a in ATTRIBUTES}
for _special in (INSTANCE_AVAILABILITY, RETRIEVE_URL, SPECIFIC_CHARACTER_SET):
    BY_TAG[_special.tag] = _special
    BY_KEYWORD[_special.keyword] = _special

# Date/time attributes matched together as one datetime (PS3.4 C.2.2.2.5.1).
DATE_TIME_PAIRS: tuple[tuple[str, str], ...] = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("ContentDate", "ContentTime"),
    ("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"),
)

# The default return attributes of PS3.18 Tables 10.6.3-3 (study), -4 (series), -5 (instance),
# plus the UIDs of the parent levels (viewers need them to build retrieve URLs).
DEFAULT_RETURN: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    Level.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "TimezoneOffsetFromUTC",
        "RetrieveURL",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "StudyInstanceUID",
        "Modality",
        "TimezoneOffsetFromUTC",
        "SeriesDescription",
        "RetrieveURL",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
    ),
    Level.INSTANCE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceAvailability",
        "TimezoneOffsetFromUTC",
        "RetrieveURL",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}


def default_return(level: Level, parent_levels: tuple[Level, ...] = ()) -> tuple[Attribute, ...]:
    """Default attributes for a search at `level`, plus the defaults of `parent_levels`
    (PS3.18 §10.6.3.3: /series returns study attributes too, /instances both)."""
    names: list[str] = []
    for upper in sorted(parent_levels):
        if upper < level:
            names.extend(DEFAULT_RETURN[upper])
    names.extend(DEFAULT_RETURN[level])
    chosen: dict[str, Attribute] = {}
    for name in names:
        chosen.setdefault(name, BY_KEYWORD[name])
    return tuple(chosen.values())


def attributes_at(level: Level) -> tuple[Attribute, ...]:
    """Every registry attribute available to a search at `level` (for includefield=all)."""
    if level is Level.PATIENT:
        return tuple(a for a in ATTRIBUTES if a.level is Level.PATIENT)
    return tuple(
        a for a in ATTRIBUTES if a.level <= level and not (a.level is Level.PATIENT and a.computed)
    )


def resolve(name: str | int) -> tuple[int, str, Attribute | None]:
    """A keyword, an 8-hex-digit tag or an int tag -> (tag, keyword, registry entry or None).

    Raises ValueError when it names no DICOM attribute.
    """
    if isinstance(name, int):
        tag = name
    else:
        text = name.strip()
        if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
            tag = int(text, 16)
        else:
            found = tag_for_keyword(text)
            if found is None:
                raise ValueError(f"{name!r} is not a DICOM attribute keyword or tag")
            tag = int(found)
    entry = BY_TAG.get(tag)
    if entry is not None:
        return tag, entry.keyword, entry
    return tag, keyword_for_tag(tag) or f"{tag:08X}", None
