"""The study- and series-level values one instance header carries, as index columns.

Written to the study and series rows by the first upload of a study/series, and to the
per-source rows (`StudySource`, `SeriesSource`) by the first upload of each source, so a
source-locked query can show values that come from its own sources only.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from tessera.index import attributes as a

# The keywords these values are read from (the 0005 backfill reads them from stored JSON).
STUDY_KEYWORDS: tuple[str, ...] = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "SpecificCharacterSet",
    "TimezoneOffsetFromUTC",
)
SERIES_KEYWORDS: tuple[str, ...] = (
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
)


def study_values(ds: Dataset) -> dict[str, Any]:
    """Column -> value for every column of `models.STUDY_VALUE_COLUMNS`."""
    patient_name = a.person_name(ds, "PatientName")
    referring = a.person_name(ds, "ReferringPhysicianName")
    return {
        "study_date": a.date_of(ds, "StudyDate"),
        "study_time": a.time_of(ds, "StudyTime"),
        "accession_number": a.text(ds, "AccessionNumber"),
        "study_id": a.text(ds, "StudyID"),
        "study_description": a.text(ds, "StudyDescription", 1024),
        "referring_physician_name": referring,
        "referring_physician_name_norm": a.normalize_person_name(referring),
        "patient_name": patient_name,
        "patient_name_norm": a.normalize_person_name(patient_name),
        "patient_id": a.text(ds, "PatientID") or "",
        "issuer_of_patient_id": a.text(ds, "IssuerOfPatientID") or "",
        "patient_birth_date": a.date_of(ds, "PatientBirthDate"),
        "patient_sex": a.text(ds, "PatientSex", 16),
        "specific_character_set": a.text(ds, "SpecificCharacterSet", 256),
        "timezone_offset_from_utc": a.text(ds, "TimezoneOffsetFromUTC", 16),
    }


def series_values(ds: Dataset) -> dict[str, Any]:
    """Column -> value for every column of `models.SERIES_VALUE_COLUMNS`."""
    return {
        "modality": a.text(ds, "Modality", 16),
        "series_number": a.integer(ds, "SeriesNumber"),
        "series_description": a.text(ds, "SeriesDescription", 1024),
        "series_date": a.date_of(ds, "SeriesDate"),
        "series_time": a.time_of(ds, "SeriesTime"),
        "body_part_examined": a.text(ds, "BodyPartExamined"),
        "performed_procedure_step_start_date": a.date_of(ds, "PerformedProcedureStepStartDate"),
        "performed_procedure_step_start_time": a.time_of(ds, "PerformedProcedureStepStartTime"),
    }
