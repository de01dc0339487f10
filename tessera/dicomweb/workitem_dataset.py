"""A workitem as a UPS dataset (PS3.4 Table CC.2.5-3) and back.

Out: a worklist row (`tessera.index.worklist`) becomes the Unified Procedure Step attributes,
its patient and request values taken through the Modality Worklist's own value functions
(`tessera.scp.mwl.ORDER_VALUES`, `STEP_VALUES`), so MWL and UPS-RS never disagree. In: a
Create or Update request's dataset becomes the order fields of `tessera.services.orders`.

Where the MWL step attributes live in a UPS:

| order / MWL | UPS |
|---|---|
| Scheduled Station AE Title, Scheduled Station Name | Scheduled Station Name Code Sequence: Code Value = the AE title, scheme `99TESSERA`, Code Meaning = the station name (else the AE title) |
| Modality | Scheduled Station Class Code Sequence: Code Value = the modality, scheme `DCM` (CID 29) |
| Scheduled Performing Physician's Name | Scheduled Human Performers Sequence > Human Performer's Name |
| Scheduled Procedure Step Start Date + Time | Scheduled Procedure Step Start DateTime |
| Scheduled Procedure Step Description | Procedure Step Label |
| Requested Procedure Code Sequence | Scheduled Workitem Code Sequence, and in the Referenced Request Sequence |
| Accession Number, Requested Procedure ID/Description, Reason, Issuer of Accession Number | Referenced Request Sequence (one item) |
| Requested Procedure Priority (STAT, HIGH / ROUTINE, MEDIUM / LOW) | Scheduled Procedure Step Priority (HIGH / MEDIUM / LOW) |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from sqlalchemy import RowMapping

from tessera.scp.mwl import ORDER_VALUES, STEP_VALUES
from tessera.services.workitems import UPS_STATE, InvalidWorkitemRequest

# Unified Procedure Step - Push SOP Class: the SOP Class UID of every workitem (PS3.4 CC.3.1).
UPS_PUSH_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.1"
STATION_SCHEME = "99TESSERA"
MODALITY_SCHEME = "DCM"
# Code Meanings of common modalities (PS3.16 CID 29); others carry the modality itself.
MODALITY_MEANINGS = {
    "CR": "Computed Radiography",
    "CT": "Computed Tomography",
    "DX": "Digital Radiography",
    "MG": "Mammography",
    "MR": "Magnetic Resonance",
    "NM": "Nuclear Medicine",
    "OT": "Other",
    "PT": "Positron emission tomography",
    "RF": "Radio Fluoroscopy",
    "US": "Ultrasound",
    "XA": "X-Ray Angiography",
}
UPS_PRIORITY = {
    "STAT": "HIGH",
    "HIGH": "HIGH",
    "ROUTINE": "MEDIUM",
    "MEDIUM": "MEDIUM",
    "LOW": "LOW",
}
# Scheduled Procedure Step Priority as order priorities (matching and create).
ORDER_PRIORITIES = {"HIGH": ("STAT", "HIGH"), "MEDIUM": ("ROUTINE", "MEDIUM"), "LOW": ("LOW",)}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _dt(day: date | None, moment: time | None) -> str:
    if day is None:
        return ""
    return day.strftime("%Y%m%d") + (moment.strftime("%H%M%S") if moment else "")


def _set(dataset: Dataset, keyword: str, value: object) -> None:
    if isinstance(value, list):
        setattr(dataset, keyword, Sequence(value))
    else:
        setattr(dataset, keyword, value if value not in (None, "") else None)


def _order(keyword: str) -> Callable[[RowMapping], object]:
    return ORDER_VALUES[keyword]


def workitem_dataset(row: RowMapping) -> Dataset:
    """The workitem of one worklist row. The Transaction UID is never part of it."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = UPS_PUSH_SOP_CLASS
    ds.SOPInstanceUID = row["sps_workitem_uid"]
    for keyword in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate"):
        _set(ds, keyword, _order(keyword)(row))
    _set(ds, "PatientSex", _order("PatientSex")(row))
    _set(ds, "StudyInstanceUID", _order("StudyInstanceUID")(row))
    request = Dataset()
    for keyword in (
        "AccessionNumber",
        "IssuerOfAccessionNumberSequence",
        "RequestedProcedureCodeSequence",
        "RequestedProcedureDescription",
        "RequestedProcedureID",
        "ReasonForTheRequestedProcedure",
        "StudyInstanceUID",
    ):
        _set(request, keyword, _order(keyword)(row))
    request.PlacerOrderNumberImagingServiceRequest = None
    request.FillerOrderNumberImagingServiceRequest = None
    ds.ReferencedRequestSequence = Sequence([request])
    _set(ds, "ScheduledProcedureStepPriority", UPS_PRIORITY.get(row["priority"], "MEDIUM"))
    updated = row["updated_at"]
    if isinstance(updated, datetime):
        ds.ScheduledProcedureStepModificationDateTime = updated.strftime("%Y%m%d%H%M%S")
    _set(ds, "ProcedureStepLabel", STEP_VALUES["ScheduledProcedureStepDescription"](row))
    ds.WorklistLabel = None
    station = str(STEP_VALUES["ScheduledStationAETitle"](row))
    station_name = str(STEP_VALUES["ScheduledStationName"](row))
    _set(
        ds,
        "ScheduledStationNameCodeSequence",
        [_code(station, STATION_SCHEME, station_name or station)] if station else [],
    )
    modality = str(STEP_VALUES["Modality"](row))
    _set(
        ds,
        "ScheduledStationClassCodeSequence",
        [_code(modality, MODALITY_SCHEME, MODALITY_MEANINGS.get(modality, modality))]
        if modality
        else [],
    )
    ds.ScheduledStationGeographicLocationCodeSequence = Sequence([])
    performer = str(STEP_VALUES["ScheduledPerformingPhysicianName"](row))
    performers = []
    if performer:
        item = Dataset()
        item.HumanPerformerCodeSequence = Sequence([])
        item.HumanPerformerName = performer
        performers.append(item)
    _set(ds, "ScheduledHumanPerformersSequence", performers)
    _set(
        ds, "ScheduledProcedureStepStartDateTime", _dt(row["sps_start_date"], row["sps_start_time"])
    )
    _set(ds, "ScheduledWorkitemCodeSequence", _order("RequestedProcedureCodeSequence")(row))
    ds.InputReadinessState = "READY"
    ds.InputInformationSequence = Sequence([])
    ds.ProcedureStepState = UPS_STATE[row["status"]]
    return ds


# --- requests ---------------------------------------------------------------------------

# Order fields (as InvalidOrder names them) -> the attribute a UPS client sent.
FIELD_ATTRIBUTES = {
    "accession_number": "Referenced Request Sequence > Accession Number (0008,0050)",
    "issuer_of_accession_number": "Issuer of Accession Number Sequence (0008,0051)",
    "patient_name": "Patient's Name (0010,0010)",
    "patient_id": "Patient ID (0010,0020)",
    "issuer_of_patient_id": "Issuer of Patient ID (0010,0021)",
    "patient_birth_date": "Patient's Birth Date (0010,0030)",
    "patient_sex": "Patient's Sex (0010,0040)",
    "requested_procedure_id": "Requested Procedure ID (0040,1001)",
    "requested_procedure_description": "Requested Procedure Description (0032,1060)",
    "reason_for_requested_procedure": "Reason for the Requested Procedure (0040,1002)",
    "priority": "Scheduled Procedure Step Priority (0074,1200)",
    "study_instance_uid": "Study Instance UID (0020,000D)",
    "referring_physician_name": "Referring Physician's Name (0008,0090)",
    "scheduled_procedure_steps[0].start": "Scheduled Procedure Step Start DateTime (0040,4005)",
    "modality": "Scheduled Station Class Code Sequence > Code Value (the modality)",
    "scheduled_station_ae_title": "Scheduled Station Name Code Sequence > Code Value",
    "scheduled_station_name": "Scheduled Station Name (0040,0010)",
    "scheduled_performing_physician_name": "Human Performer's Name (0040,4037)",
    "description": "Procedure Step Label (0074,1204)",
}


def attribute_message(message: str) -> str:
    """An order validation message with the order's field names as DICOM attributes."""
    for name in sorted(FIELD_ATTRIBUTES, key=len, reverse=True):
        message = message.replace(f"'{name}'", FIELD_ATTRIBUTES[name])
    return message


def _text(ds: Dataset, keyword: str) -> str | None:
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None:
        return ""
    if ds[keyword].VM > 1:
        raise InvalidWorkitemRequest(f"{keyword} must have one value")
    return str(value)


def _item(ds: Dataset, keyword: str) -> Dataset | None:
    if keyword not in ds:
        return None
    items = ds[keyword].value or []
    if len(items) > 1:
        raise InvalidWorkitemRequest(f"{keyword} must have at most one item")
    return items[0] if items else Dataset()


_DT_RE = re.compile(r"^(\d{8})(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?$")


def iso_start(value: str) -> str | None:
    """A DT value 'YYYYMMDD[HH[MM[SS[.F]]]]' (site-local, no offset) as an ISO date-time."""
    if not value:
        return None
    match = _DT_RE.match(value.strip())
    if match is None:
        raise InvalidWorkitemRequest(
            f"Scheduled Procedure Step Start DateTime (0040,4005) {value!r} is not a "
            "DT value YYYYMMDDHHMMSS (site-local time, no UTC offset)"
        )
    day, hours, minutes, seconds, _fraction = match.groups()
    text = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    if hours is not None:
        text += f"T{hours}:{minutes or '00'}:{seconds or '00'}"
    return text


def order_fields(ds: Dataset, partial: bool) -> dict:
    """The order fields a UPS dataset gives (only those present when `partial`); the step's
    under `scheduled_procedure_step`."""
    fields: dict[str, object] = {}
    for keyword, name in (
        ("PatientName", "patient_name"),
        ("PatientID", "patient_id"),
        ("IssuerOfPatientID", "issuer_of_patient_id"),
        ("PatientBirthDate", "patient_birth_date"),
        ("PatientSex", "patient_sex"),
        ("ReferringPhysicianName", "referring_physician_name"),
    ):
        value = _text(ds, keyword)
        if value is not None:
            fields[name] = value
    priority = _text(ds, "ScheduledProcedureStepPriority")
    if priority:
        if priority not in ORDER_PRIORITIES:
            raise InvalidWorkitemRequest(
                f"Scheduled Procedure Step Priority (0074,1200) {priority!r} must be HIGH, "
                "MEDIUM or LOW"
            )
        fields["priority"] = priority
    request = _item(ds, "ReferencedRequestSequence")
    if request is not None:
        for keyword, name in (
            ("AccessionNumber", "accession_number"),
            ("RequestedProcedureID", "requested_procedure_id"),
            ("RequestedProcedureDescription", "requested_procedure_description"),
            ("ReasonForTheRequestedProcedure", "reason_for_requested_procedure"),
        ):
            value = _text(request, keyword)
            if value is not None:
                fields[name] = value
        issuer = _item(request, "IssuerOfAccessionNumberSequence")
        if issuer is not None:
            fields["issuer_of_accession_number"] = _text(issuer, "LocalNamespaceEntityID") or ""
        code = _item(request, "RequestedProcedureCodeSequence")
        if code is not None:
            fields["requested_procedure_code"] = {
                "code_value": _text(code, "CodeValue") or "",
                "coding_scheme_designator": _text(code, "CodingSchemeDesignator") or "",
                "code_meaning": _text(code, "CodeMeaning") or "",
            }
        study = _text(request, "StudyInstanceUID")
        if study:
            fields["study_instance_uid"] = study
    study = _text(ds, "StudyInstanceUID")
    if study:
        fields["study_instance_uid"] = study
    step = _step_fields(ds)
    if step or not partial:
        fields["scheduled_procedure_step"] = step
    return fields


def _step_fields(ds: Dataset) -> dict:
    step: dict[str, object] = {}
    start = _text(ds, "ScheduledProcedureStepStartDateTime")
    if start is not None:
        step["start"] = iso_start(start)
    station = _item(ds, "ScheduledStationNameCodeSequence")
    if station is not None:
        step["scheduled_station_ae_title"] = _text(station, "CodeValue") or ""
    station_class = _item(ds, "ScheduledStationClassCodeSequence")
    if station_class is not None:
        step["modality"] = _text(station_class, "CodeValue") or ""
    performers = _item(ds, "ScheduledHumanPerformersSequence")
    if performers is not None:
        step["scheduled_performing_physician_name"] = _text(performers, "HumanPerformerName") or ""
    for keyword, name in (
        ("ProcedureStepLabel", "description"),
        # MWL keywords, accepted as well.
        ("ScheduledStationAETitle", "scheduled_station_ae_title"),
        ("ScheduledStationName", "scheduled_station_name"),
        ("Modality", "modality"),
    ):
        value = _text(ds, keyword)
        if value is not None:
            step[name] = value
    return step
