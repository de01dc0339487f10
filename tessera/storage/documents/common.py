"""What every generated document object carries: the target study's patient and study
attributes, a new series, SOP Common, General and SC Equipment; and its Part 10 file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, generate_uid

from tessera import __version__
from tessera.scp.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

MANUFACTURER = "Tessera"
# Attributes of the Patient and General Study modules copied from the target study.
STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "TimezoneOffsetFromUTC",
)


@dataclass(frozen=True)
class DocumentDescription:
    """What the uploader says about the document."""

    title: str
    series_number: int = 1
    # When the document was made (default: now).
    content_datetime: datetime | None = None


# Patient and General Study attributes of Type 2: written even when empty.
STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)


def new_document_dataset(
    study: Dataset, sop_class_uid: str, modality: str, description: DocumentDescription
) -> Dataset:
    """A new instance in a new series of `study` (a dataset holding STUDY_KEYWORDS; the
    Type 2 ones are written empty when the study has no value)."""
    now = datetime.now()
    made = description.content_datetime or now
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # titles and names as UTF-8
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid(prefix=None)
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    for keyword in STUDY_KEYWORDS:
        value = study.get(keyword)
        if value not in (None, ""):
            setattr(ds, keyword, value)
    for keyword in STUDY_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid(prefix=None)
    ds.SeriesNumber = description.series_number
    ds.SeriesDescription = description.title[:64]
    ds.SeriesDate = made.strftime("%Y%m%d")
    ds.SeriesTime = made.strftime("%H%M%S")
    ds.InstanceNumber = 1
    ds.ContentDate = made.strftime("%Y%m%d")
    ds.ContentTime = made.strftime("%H%M%S")
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    return ds


def add_sc_equipment(ds: Dataset, conversion_type: str = "WSD") -> None:
    """SC Equipment module: the object was made by converting a file at a workstation."""
    ds.ConversionType = conversion_type


def write_part10(ds: Dataset, path: Path, transfer_syntax_uid: str) -> None:
    """Write `ds` as a DICOM Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
