"""A signed report as a DICOM Structured Report (PS3.3 A.35.1 Basic Text SR, A.35.3
Comprehensive SR): Completion Flag COMPLETE, Verification Flag VERIFIED, the signer in the
Verifying Observer Sequence, the amended document in the Predecessor Documents Sequence.

The content tree is one CONTAINER titled with the template's document code, holding a TEXT,
NUM (with its UCUM unit) or CODE item per value; a NUM needs Comprehensive SR, anything else
stays Basic Text SR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import BasicTextSRStorage, ComprehensiveSRStorage
from pydicom.valuerep import DSfloat

from tessera import __version__
from tessera.storage.documents.common import STUDY_TYPE2

MANUFACTURER = "Tessera"
# Patient and General Study attributes written when the study has them (the Type 2 ones,
# documents.common.STUDY_TYPE2, are written even when empty).
STUDY_TYPE3 = ("IssuerOfPatientID", "StudyDescription")


@dataclass(frozen=True)
class ContentItem:
    """One value of the report: TEXT (text), NUM (number + unit) or CODE (code)."""

    value_type: str
    concept: dict
    label: str
    text: str = ""
    number: float | None = None
    unit: dict | None = None
    code: dict | None = None

    def codes(self) -> list[dict]:
        return [c for c in (self.concept, self.unit, self.code) if c is not None]

    def display(self) -> str:
        if self.value_type == "NUM":
            unit = self.unit["value"] if self.unit else ""
            return f"{_number(self.number)} {unit}".strip()
        if self.value_type == "CODE" and self.code is not None:
            return self.code["meaning"]
        return self.text


@dataclass(frozen=True)
class Predecessor:
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str


def code_item(code: dict) -> Dataset:
    item = Dataset()
    item.CodeValue = code["value"]
    item.CodingSchemeDesignator = code["scheme"]
    item.CodeMeaning = code["meaning"]
    return item


def sr_sop_class_for(items: list[ContentItem]) -> str:
    return (
        ComprehensiveSRStorage if any(i.value_type == "NUM" for i in items) else BasicTextSRStorage
    )


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(DSfloat(value, auto_format=True))


def base_dataset(
    study: dict[str, str],
    sop_class_uid: str,
    sop_instance_uid: str,
    series_instance_uid: str,
    modality: str,
    series_number: int,
    instance_number: int,
    made: datetime,
) -> Dataset:
    """Patient, General Study, series, General Equipment and SOP Common attributes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = made.strftime("%Y%m%d")
    ds.InstanceCreationTime = made.strftime("%H%M%S")
    ds.StudyInstanceUID = study["StudyInstanceUID"]
    for keyword in STUDY_TYPE2:
        setattr(ds, keyword, study.get(keyword, ""))
    for keyword in STUDY_TYPE3:
        if study.get(keyword):
            setattr(ds, keyword, study[keyword])
    ds.Modality = modality
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.ContentDate = made.strftime("%Y%m%d")
    ds.ContentTime = made.strftime("%H%M%S")
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    return ds


def structured_report(
    study: dict[str, str],
    sop_instance_uid: str,
    series_instance_uid: str,
    instance_number: int,
    document_code: dict,
    items: list[ContentItem],
    signer: str,
    organization: str,
    signed_at: datetime,
    predecessor: Predecessor | None,
) -> Dataset:
    sop_class_uid = sr_sop_class_for(items)
    local = signed_at.astimezone()
    ds = base_dataset(
        study,
        sop_class_uid,
        sop_instance_uid,
        series_instance_uid,
        "SR",
        901,
        instance_number,
        local,
    )
    ds.SeriesDescription = "Report"
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = person_name(signer)
    observer.VerifyingObserverIdentificationCodeSequence = []
    observer.VerifyingOrganization = organization[:64] or MANUFACTURER
    observer.VerificationDateTime = local.strftime("%Y%m%d%H%M%S")
    ds.VerifyingObserverSequence = [observer]
    if predecessor is not None:
        ds.PredecessorDocumentsSequence = [_sop_reference(predecessor)]
    ds.PerformedProcedureCodeSequence = []
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [code_item(document_code)]
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentSequence = [_content_item(item) for item in items]
    declare_local_scheme(ds, [document_code, *(c for i in items for c in i.codes())])
    return ds


LOCAL_SCHEME_PREFIX = "99"


def declare_local_scheme(ds: Dataset, codes: list[dict]) -> None:
    """Name the private coding schemes ("99...") the object uses (SOP Common module)."""
    local = sorted({c["scheme"] for c in codes if c["scheme"].startswith(LOCAL_SCHEME_PREFIX)})
    if not local:
        return
    declared = []
    for scheme in local:
        item = Dataset()
        item.CodingSchemeDesignator = scheme
        item.CodingSchemeName = f"{MANUFACTURER} local codes"
        item.CodingSchemeResponsibleOrganization = MANUFACTURER
        declared.append(item)
    ds.CodingSchemeIdentificationSequence = declared


def person_name(principal: str) -> str:
    """A user name as a DICOM Person Name (family name component; no separators)."""
    cleaned = "".join(ch for ch in principal if ch not in "^=\\")
    return "^".join(cleaned.split()[:5])[:64] or "UNKNOWN"


def _sop_reference(predecessor: Predecessor) -> Dataset:
    sop = Dataset()
    sop.ReferencedSOPClassUID = predecessor.sop_class_uid
    sop.ReferencedSOPInstanceUID = predecessor.sop_instance_uid
    series = Dataset()
    series.SeriesInstanceUID = predecessor.series_instance_uid
    series.ReferencedSOPSequence = [sop]
    study = Dataset()
    study.StudyInstanceUID = predecessor.study_instance_uid
    study.ReferencedSeriesSequence = [series]
    return study


def _content_item(item: ContentItem) -> Dataset:
    ds = Dataset()
    ds.RelationshipType = "CONTAINS"
    ds.ValueType = item.value_type
    ds.ConceptNameCodeSequence = [code_item(item.concept)]
    if item.value_type == "TEXT":
        ds.TextValue = item.text
    elif item.value_type == "NUM":
        measured = Dataset()
        measured.MeasurementUnitsCodeSequence = [code_item(item.unit or {})]
        measured.NumericValue = _number(item.number)
        ds.MeasuredValueSequence = [measured]
    elif item.value_type == "CODE":
        ds.ConceptCodeSequence = [code_item(item.code or {})]
    else:
        raise ValueError(f"unsupported value type {item.value_type}")
    return ds
