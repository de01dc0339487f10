"""Synthetic DICOM instances for tests, benchmarks and demos (never patient data)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PREFIX = "2.25."


@dataclass
class StudySpec:
    patient_name: str = "DOE^JANE"
    patient_id: str = "PAT-1"
    study_date: str = "20240101"
    study_description: str = "Synthetic study"
    accession_number: str = "ACC-1"
    study_instance_uid: str = ""

    def __post_init__(self) -> None:
        if not self.study_instance_uid:
            self.study_instance_uid = generate_uid()


def _base(study: StudySpec, series_uid: str, sop_class: str, modality: str, number: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = study.study_date
    ds.StudyTime = "101500"
    ds.StudyDescription = study.study_description
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = "REF^DOCTOR"
    ds.StudyID = "1"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    return ds


def _to_bytes(ds: Dataset, transfer_syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def ct_image(
    study: StudySpec,
    series_uid: str,
    number: int = 1,
    rows: int = 512,
    columns: int = 512,
    seed: int | None = None,
) -> bytes:
    """An uncompressed 16-bit CT slice (explicit VR little endian)."""
    ds = _base(study, series_uid, CTImageStorage, "CT", number)
    rng = np.random.default_rng(seed if seed is not None else number)
    pixels = rng.integers(0, 4000, size=(rows, columns), dtype=np.uint16)
    _set_mono_pixels(ds, pixels)
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.ImagePositionPatient = [0, 0, float(number)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    return _to_bytes(ds, ExplicitVRLittleEndian)


def mr_rle_image(study: StudySpec, series_uid: str, number: int = 1, size: int = 256) -> bytes:
    """An RLE Lossless compressed MR slice (encapsulated Pixel Data)."""
    ds = _base(study, series_uid, MRImageStorage, "MR", number)
    yy, xx = np.mgrid[0:size, 0:size]
    pixels = ((xx + yy * 3 + number) % 1024).astype(np.uint16)
    _set_mono_pixels(ds, pixels)
    ds.compress(RLELossless, pixels, encoding_plugin="pydicom")
    return _to_bytes(ds, RLELossless)


def rgb_cine(study: StudySpec, series_uid: str, frames: int = 30, size: int = 128) -> bytes:
    """A multi-frame RGB secondary capture (uncompressed)."""
    ds = _base(study, series_uid, SecondaryCaptureImageStorage, "OT", 1)
    data = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for f in range(frames):
        data[f, :, :, 0] = (np.arange(size) * 2 + f * 8) % 256
        data[f, :, :, 1] = 128
        data[f, :, :, 2] = (np.arange(size)[:, None] * 2) % 256
    ds.NumberOfFrames = frames
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = data.tobytes()
    return _to_bytes(ds, ExplicitVRLittleEndian)


def _set_mono_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12 if pixels.max() < 4096 else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()


def header_only_instance(attributes: dict[str, object], sop_class: str = CTImageStorage) -> bytes:
    """A Part 10 file with only the given attributes (keyword -> value) and no Pixel Data:
    what index and query tests and benchmarks need, at a few hundred bytes each."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return _to_bytes(ds, ExplicitVRLittleEndian)
