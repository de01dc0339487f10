"""A workitem as a UPS dataset (PS3.4 Table CC.2.5-3) and back.

Out: a worklist row (`tessera.index.worklist`) becomes the Unified Procedure Step attributes
(as DICOM JSON),
its patient and request values taken through the Modality Worklist's own value functions
(`tessera.index.worklist_values`), so MWL and UPS-RS never disagree. In: a
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
from sqlalchemy import RowMapping

from tessera.index.worklist_values import ORDER_VALUES, STEP_VALUES
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


JsonDataset = dict[str, dict]
# VRs whose value is one string even with a backslash in it (PS3.5 6.2).
_ONE_VALUE_VRS = ("LT", "ST", "UT")


def _element(vr: str, value: object) -> dict:
    """One DICOM JSON element (PS3.18 F.2): no "Value" when empty, a sequence's items as
    they are, person names by component group, other strings split at backslashes."""
    if vr == "SQ":
        return {"vr": vr, "Value": value}
    if value is None or value == "":
        return {"vr": vr}
    text = str(value)
    values = [text] if vr in _ONE_VALUE_VRS else text.split("\\")
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(name) for name in values]}
    return {"vr": vr, "Value": values}


def _person_name(name: str) -> dict[str, str]:
    groups = name.split("=")
    return dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False))


def _code(value: str, scheme: str, meaning: str) -> JsonDataset:
    return {
        "00080100": _element("SH", value),
        "00080102": _element("SH", scheme),
        "00080104": _element("LO", meaning),
    }


def _request_code(row: RowMapping) -> list[JsonDataset]:
    if not row["requested_procedure_code_value"]:
        return []
    return [
        _code(
            row["requested_procedure_code_value"],
            row["requested_procedure_coding_scheme"],
            row["requested_procedure_code_meaning"],
        )
    ]


def _issuer(row: RowMapping) -> list[JsonDataset]:
    if not row["issuer_of_accession_number"]:
        return []
    return [{"00400031": _element("UT", row["issuer_of_accession_number"])}]


def _dt(day: date | None, moment: time | None) -> str:
    if day is None:
        return ""
    return day.strftime("%Y%m%d") + (moment.strftime("%H%M%S") if moment else "")


def _order(keyword: str) -> Callable[[RowMapping], object]:
    return ORDER_VALUES[keyword]


def workitem_json(row: RowMapping) -> JsonDataset:
    """The workitem of one worklist row as DICOM JSON (what pydicom's `to_json_dict` gives
    for the same attributes, built without a pydicom Dataset: a search answers hundreds).
    Values come through the Modality Worklist's value functions. The Transaction UID is
    never part of it."""
    request = {
        "00080050": _element("SH", _order("AccessionNumber")(row)),
        "00080051": _element("SQ", _issuer(row)),
        "00321064": _element("SQ", _request_code(row)),
        "00321060": _element("LO", _order("RequestedProcedureDescription")(row)),
        "00401001": _element("SH", _order("RequestedProcedureID")(row)),
        "00401002": _element("LO", _order("ReasonForTheRequestedProcedure")(row)),
        "0020000D": _element("UI", _order("StudyInstanceUID")(row)),
        # Placer and Filler Order Number / Imaging Service Request
        "00402016": _element("LO", None),
        "00402017": _element("LO", None),
    }
    ds: JsonDataset = {
        "00080005": _element("CS", "ISO_IR 192"),
        "00080016": _element("UI", UPS_PUSH_SOP_CLASS),
        "00080018": _element("UI", row["sps_workitem_uid"]),
        "00100010": _element("PN", _order("PatientName")(row)),
        "00100020": _element("LO", _order("PatientID")(row)),
        "00100021": _element("LO", _order("IssuerOfPatientID")(row)),
        "00100030": _element("DA", _order("PatientBirthDate")(row)),
        "00100040": _element("CS", _order("PatientSex")(row)),
        "0020000D": _element("UI", _order("StudyInstanceUID")(row)),
        "0040A370": _element("SQ", [request]),
        "00741200": _element("CS", UPS_PRIORITY.get(row["priority"], "MEDIUM")),
    }
    updated = row["updated_at"]
    if isinstance(updated, datetime):
        # Scheduled Procedure Step Modification DateTime
        ds["00404010"] = _element("DT", updated.strftime("%Y%m%d%H%M%S"))
    # Procedure Step Label, Worklist Label
    ds["00741204"] = _element("LO", STEP_VALUES["ScheduledProcedureStepDescription"](row))
    ds["00741202"] = _element("LO", None)
    ds.update(
        assignment_elements(
            str(STEP_VALUES["ScheduledStationAETitle"](row)),
            str(STEP_VALUES["ScheduledStationName"](row)),
            str(STEP_VALUES["ScheduledPerformingPhysicianName"](row)),
        )
    )
    modality = str(STEP_VALUES["Modality"](row))
    # Scheduled Station Class Code Sequence
    ds["00404026"] = _element(
        "SQ",
        [_code(modality, MODALITY_SCHEME, MODALITY_MEANINGS.get(modality, modality))]
        if modality
        else [],
    )
    # Scheduled Station Geographic Location Code Sequence
    ds["00404027"] = _element("SQ", [])
    # Scheduled Procedure Step Start DateTime, Scheduled Workitem Code Sequence
    ds["00404005"] = _element("DT", _dt(row["sps_start_date"], row["sps_start_time"]))
    ds["00404018"] = _element("SQ", _request_code(row))
    # Input Readiness State, Input Information Sequence, Procedure Step State
    ds["00404041"] = _element("CS", "READY")
    ds["00404021"] = _element("SQ", [])
    ds["00741000"] = _element("CS", UPS_STATE[row["status"]])
    if row.get("sps_progress") is not None or row.get("sps_progress_description") is not None:
        # Procedure Step Progress Information Sequence: what the performer last reported.
        ds["00741002"] = _element(
            "SQ", [progress_item(row["sps_progress"], row["sps_progress_description"])]
        )
    return ds


def assignment_elements(station: str, station_name: str, performer: str) -> JsonDataset:
    """Scheduled Station Name Code Sequence (the station AE title, its name as meaning) and
    Scheduled Human Performers Sequence (> Human Performer Code Sequence, Name): in a
    workitem and in a UPS Assigned event report."""
    return {
        "00404025": _element(
            "SQ", [_code(station, STATION_SCHEME, station_name or station)] if station else []
        ),
        "00404034": _element(
            "SQ",
            [{"00404009": _element("SQ", []), "00404037": _element("PN", performer)}]
            if performer
            else [],
        ),
    }


def progress_item(progress: str | None, description: str | None) -> JsonDataset:
    """An item of Procedure Step Progress Information Sequence (0074,1002): Procedure Step
    Progress (0074,1004, DS: a JSON number) and its Description (0074,1006)."""
    item: JsonDataset = {"00741004": {"vr": "DS"}, "00741006": _element("ST", description)}
    if progress:
        number = float(progress)
        item["00741004"]["Value"] = [int(number) if number.is_integer() else number]
    return item


def progress_of(ds: Dataset) -> tuple[str | None, str | None] | None:
    """The progress an Update Workitem request reports (None when it reports none):
    Procedure Step Progress, a number from 0 to 100, and its Description."""
    info = _item(ds, "ProcedureStepProgressInformationSequence")
    if info is None:
        return None
    progress = _text(info, "ProcedureStepProgress")
    if progress:
        try:
            number = float(progress)
        except ValueError:
            number = -1.0
        if not 0 <= number <= 100:
            raise InvalidWorkitemRequest(
                f"Procedure Step Progress (0074,1004) {progress!r} must be a number from 0 to 100"
            )
        progress = progress.strip()
        if len(progress) > 16:
            raise InvalidWorkitemRequest(
                "Procedure Step Progress (0074,1004): at most 16 characters"
            )
    description = _text(info, "ProcedureStepProgressDescription")
    if description is not None and len(description) > 1024:
        raise InvalidWorkitemRequest(
            "Procedure Step Progress Description (0074,1006): at most 1024 characters"
        )
    return progress, description


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
