"""write_instance (frame by frame into a file) gives what transcode_instance gives whole, with
the same attribute coercion, for pydicom's test files; what cannot be streamed falls back."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from tessera.index.coercion import coerce_dataset, coerce_part10
from tessera.storage.transcode import TranscodeError, transcode_instance
from tessera.storage.transcode_stream import write_instance

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_LS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"
HTJ2K = "1.2.840.10008.1.2.4.201"
DEFLATED = "1.2.840.10008.1.2.1.99"

FILES = [
    "emri_small.dcm",  # 10 frames, native 16-bit
    "emri_small_RLE.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "SC_rgb_2frame.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # lossy source: the lossy marks
    "MR_small_implicit.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "MR_small.dcm",  # elements after Pixel Data: whole-instance fallback
    "MR_small_bigendian.dcm",  # big endian: whole-instance fallback
]
TARGETS = [EXPLICIT, IMPLICIT, RLE, JPEG_LS, J2K, HTJ2K, DEFLATED]
COERCION = {"PatientName": "MÜLLER^ANNA", "PatientID": "NEW-1"}


def _streamed(path: str, target: str, coercion: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    adjust = (lambda ds: coerce_dataset(ds, coercion)) if coercion else None
    with open(path, "rb") as fh:
        write_instance(fh, target, out, adjust)
    return out.getvalue()


def _whole(path: str, target: str, coercion: dict[str, str] | None = None) -> bytes | str:
    try:
        return coerce_part10(transcode_instance(path, target), coercion)
    except TranscodeError as exc:
        return f"TranscodeError {exc}"


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("target", TARGETS)
def test_streamed_file_is_the_whole_instance_conversion(name: str, target: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    expected = _whole(path, target)
    try:
        got: bytes | str = _streamed(path, target)
    except TranscodeError as exc:
        got = f"TranscodeError {exc}"
    if isinstance(expected, str):
        assert isinstance(got, str)  # both refuse (e.g. an encoder's limits)
    else:
        assert got == expected


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_RLE.dcm", "SC_rgb_2frame.dcm"])
@pytest.mark.parametrize("target", [EXPLICIT, IMPLICIT, RLE, JPEG_LS])
def test_streamed_coercion_matches_coerce_part10(name: str, target: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    got = pydicom.dcmread(io.BytesIO(_streamed(path, target, COERCION)))
    expected = pydicom.dcmread(io.BytesIO(_whole(path, target, COERCION)))  # type: ignore[arg-type]
    assert str(got.PatientName) == "MÜLLER^ANNA" and got.PatientID == "NEW-1"
    assert got.SpecificCharacterSet == expected.SpecificCharacterSet == "ISO_IR 192"
    assert got.file_meta.TransferSyntaxUID == target
    assert np.array_equal(got.pixel_array, expected.pixel_array)
    assert np.array_equal(got.pixel_array, pydicom.dcmread(path).pixel_array)


def test_same_syntax_without_changes_is_the_file_as_stored() -> None:
    path = get_testdata_file("SC_rgb_2frame.dcm")
    assert path is not None
    assert _streamed(path, EXPLICIT) == Path(path).read_bytes()


def _big_instance(path: Path, frames: int, size: int) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7.3")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    with open(path, "ab") as fh:
        fh.write(b"\xe0\x7f\x10\x00OW\x00\x00" + (size * size * 2 * frames).to_bytes(4, "little"))
        for number in range(frames):
            fh.write(np.full((size, size), number, "<u2").tobytes())


@pytest.mark.parametrize("target", [IMPLICIT, RLE])
def test_memory_holds_a_frame_not_the_instance(tmp_path: Path, target: str) -> None:
    """64 frames of 512 KiB (32 MiB): Python allocations peak at a few frames' worth."""
    source, converted = tmp_path / "big.dcm", tmp_path / "out.dcm"
    _big_instance(source, 64, 512)
    tracemalloc.start()
    try:
        with open(source, "rb") as fh, open(converted, "w+b") as out:
            write_instance(fh, target, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak
    got = pydicom.dcmread(converted)
    assert got.file_meta.TransferSyntaxUID == target
    assert int(got.NumberOfFrames) == 64
    assert got.pixel_array[63].max() == 63 and got.pixel_array[0].max() == 0


def test_a_target_that_cannot_be_produced_is_refused(tmp_path: Path) -> None:
    path = get_testdata_file("emri_small.dcm")
    assert path is not None
    with pytest.raises(TranscodeError):
        _streamed(path, "1.2.840.10008.1.2.4.50")  # JPEG baseline: never produced here
