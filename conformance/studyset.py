"""The study set the client conformance tests upload: real files made by others (pydicom's test
files) beside generated ones, one study per kind of object a viewer must show."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from tessera.synthetic import StudySpec, rgb_cine


@dataclass
class Study:
    name: str  # file-name friendly label
    kind: str  # "image", "cine" or "pdf": what the viewer must show
    patient_name: str  # as stored (DICOM PN, "Family^Given")
    study_instance_uid: str
    instances: list[bytes]
    # The one series to open (OHIF: SeriesInstanceUIDs=...); None: the whole study.
    series_instance_uid: str | None = None

    @property
    def family_name(self) -> str:
        return self.patient_name.split("^")[0]


def _write(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def uncompressed_ct() -> Study:
    """pydicom's CT_small.dcm: a real 128x128 CT slice, explicit VR little endian."""
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    return Study("ct", "image", str(ds.PatientName), ds.StudyInstanceUID, [open(path, "rb").read()])


def jpeg2000_series(count: int = 3) -> Study:
    """A series of JPEG 2000 Lossless MR slices built from pydicom's MR_small_jp2klossless.dcm
    (the compressed Pixel Data is kept as encoded; only the UIDs and numbers change)."""
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    study_uid, series_uid = generate_uid(), generate_uid()
    ds.PatientName = "JPEG2000^SERIES"
    ds.PatientID = "J2K-1"
    instances = []
    for number in range(1, count + 1):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [0.0, 0.0, float(number)]
        instances.append(_write(ds))
    return Study("jpeg2000", "image", str(ds.PatientName), study_uid, instances)


def rgb_cine_study(frames: int = 30) -> Study:
    study = StudySpec(patient_name="CINE^RGB", patient_id="CINE-1", accession_number="CINE")
    return Study(
        "cine", "cine", study.patient_name, study.study_instance_uid,
        [rgb_cine(study, generate_uid(), frames=frames)],
    )  # fmt: skip


def minimal_pdf(text: str = "Tessera conformance report") -> bytes:
    """A small valid one-page PDF (hand-written objects with a correct xref table)."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def encapsulated_pdf_study() -> Study:
    """An Encapsulated PDF document (PS3.3 A.45) in a study of its own."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "DOCUMENT^PDF"
    ds.PatientID = "DOC-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.StudyDate = "20240102"
    ds.StudyTime = "120000"
    ds.ContentDate = "20240102"
    ds.ContentTime = "120000"
    ds.AcquisitionDateTime = "20240102120000"
    ds.StudyDescription = "Document"
    ds.AccessionNumber = "DOC"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Modality = "DOC"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "Tessera"
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Conformance report"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf = minimal_pdf()
    # OB values have even length; the trailing pad byte is harmless after %%EOF.
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return Study("pdf", "pdf", str(ds.PatientName), ds.StudyInstanceUID, [_write(ds)])


def viewer_study_set(with_pdf: bool = True) -> list[Study]:
    studies = [uncompressed_ct(), jpeg2000_series(), rgb_cine_study()]
    if with_pdf:
        studies.append(encapsulated_pdf_study())
    return studies
