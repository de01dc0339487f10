"""A study for the WADO tests: synthetic instances plus pydicom's own test files (made by
others, many transfer syntaxes), each re-labelled into one study with fresh UIDs."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tessera.synthetic import StudySpec, ct_image, mr_rle_image, rgb_cine

# File name -> what it exercises.
TESTDATA_FILES = {
    "emri_small_jpeg_2k_lossless.dcm": "JPEG 2000 lossless, 10 frames",
    "emri_small_RLE.dcm": "RLE, 10 frames",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG baseline colour",
    "MR_small_bigendian.dcm": "explicit VR big endian",
    "image_dfl.dcm": "deflated (no frame offsets)",
    "JPEG-LL.dcm": "JPEG lossless",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "overlay data as bulk data",
    "liver.dcm": "1-bit, 3 frames (bit-packed)",
}


@dataclass
class StoredObject:
    name: str
    data: bytes
    dataset: pydicom.Dataset

    @property
    def study(self) -> str:
        return self.dataset.StudyInstanceUID

    @property
    def series(self) -> str:
        return self.dataset.SeriesInstanceUID

    @property
    def sop(self) -> str:
        return self.dataset.SOPInstanceUID

    @property
    def transfer_syntax(self) -> str:
        return str(self.dataset.file_meta.TransferSyntaxUID)

    def path(self, root: str) -> str:
        return f"{root}/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def relabelled(name: str, study_uid: str) -> bytes:
    dataset = pydicom.dcmread(get_testdata_file(name))
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.PatientID = "WADO-1"
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=False)
    return out.getvalue()


def build_study(study_uid: str | None = None) -> list[StoredObject]:
    spec = StudySpec(patient_name="WADO^TEST", patient_id="WADO-1")
    if study_uid:
        spec.study_instance_uid = study_uid
    ct_series = generate_uid()
    blobs = {
        "ct1": ct_image(spec, ct_series, 1, 64, 64),
        "ct2": ct_image(spec, ct_series, 2, 64, 64),
        "mr_rle": mr_rle_image(spec, generate_uid(), 1, 32),
        "cine": rgb_cine(spec, generate_uid(), 5, 16),
    }
    for name in TESTDATA_FILES:
        blobs[name] = relabelled(name, spec.study_instance_uid)
    return [
        StoredObject(name, data, pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True))
        for name, data in blobs.items()
    ]


def parse_multipart(response_content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Parts of a multipart/related body: (headers, payload), with the repo's own parser
    kept out of it (a test must not trust the code it checks)."""
    boundary = None
    for piece in response_content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    assert boundary, response_content_type
    delimiter = b"--" + boundary.encode()
    assert body.startswith(delimiter), body[:80]
    chunks = body.split(b"\r\n" + delimiter)
    parts = []
    first = chunks[0][len(delimiter) :]
    for index, chunk in enumerate([first, *chunks[1:]]):
        if chunk.startswith(b"--"):
            break
        assert chunk.startswith(b"\r\n"), (index, chunk[:40])
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append((headers, payload))
    assert body.endswith(delimiter + b"--\r\n")
    return parts
