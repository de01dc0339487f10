"""Transcoding on files made by others (pydicom's test files and pydicom-data).

For every file whose pixels pydicom can decode: each stored frame (read at the offsets
ingest records) decodes like pydicom decodes it; transcoded to every frame syntax the
server produces it decodes back, with pydicom, to exactly the same pixels; and the whole
instance transcoded to every output syntax is a Part 10 file whose pixels equal the
original's, still marked lossy when it was lossy. At most two frames per file are checked.
"""

from __future__ import annotations

import io
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID

from tessera.storage import syntaxes
from tessera.storage.parse import InstanceRejected, parse_part10
from tessera.storage.pixels import PixelDescription
from tessera.storage.transcode import (
    TranscodeError,
    decode_frame,
    decoded_description,
    output_syntaxes,
    transcode_frame,
    transcode_instance,
    transcoded_description,
)
from tests.conftest import dicom_testdata_files

# Implicit VR LE frames are Explicit VR LE frames, Deflated has none, and the "may be
# lossy" syntaxes get their family's lossless codestream (tests/test_transcode_rules.py).
FRAME_TARGETS = sorted(
    uid
    for uid in output_syntaxes()
    if uid not in (syntaxes.IMPLICIT_VR_LITTLE_ENDIAN, syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    and uid not in syntaxes.LOSSLESS_ENCODER_OF
)
INSTANCE_TARGETS = sorted(set(output_syntaxes()) - set(syntaxes.LOSSLESS_ENCODER_OF))
COMMON_TARGETS = (syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, syntaxes.JPEG_2000_LOSSLESS)
LARGE = 1_000_000  # pixels per frame


def _pixel_files() -> list[Path]:
    files = []
    for path in dicom_testdata_files():
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "Rows" in header and getattr(header, "file_meta", None) is not None:
            files.append(path)
    return files


PIXEL_FILES = _pixel_files()


def _id(path: Path) -> str:
    return path.name


@cache
def _parsed(path: Path):  # type: ignore[no-untyped-def]
    try:
        return parse_part10(path)
    except InstanceRejected as exc:
        return exc


@cache
def _cached_reference(path: Path, index: int, raw: bool) -> np.ndarray | str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            array = pixel_array(str(path), index=index, raw=raw)
        except Exception as exc:
            return f"pydicom cannot decode this file: {exc}"
    return array.astype(array.dtype.newbyteorder("="))


def _reference(path: Path, index: int, raw: bool) -> np.ndarray:
    """pydicom's own decode of one frame of the original file, or skip when it cannot."""
    reference = _cached_reference(path, index, raw)
    if isinstance(reference, str):
        pytest.skip(reference)
    return reference


def _description(dataset: pydicom.Dataset) -> PixelDescription:
    try:
        return PixelDescription.from_dataset(dataset)
    except ValueError as exc:
        pytest.skip(f"no usable Image Pixel description: {exc}")


def _stored_frames(path: Path) -> tuple[UID, PixelDescription, list[tuple[int, bytes]], str | None]:
    parsed = _parsed(path)
    if isinstance(parsed, InstanceRejected):
        pytest.skip(f"ingest refuses this file: {parsed.message}")
    if not parsed.frames:
        pytest.skip("frames are not addressable by offset (deflated, bit-packed or none)")
    ts = UID(parsed.transfer_syntax_uid)
    pixel = _description(parsed.dataset)
    chosen = sorted({0, len(parsed.frames) - 1})
    frames = []
    with open(path, "rb") as fh:
        for index in chosen:
            data = b""
            for offset, length in parsed.frames[index]:
                fh.seek(offset)
                data += fh.read(length)
            frames.append((index, data))
    return ts, pixel, frames, parsed.pixel_data_vr


def _raw_for(ts: UID) -> bool:
    # JPEG lossy processes decode to RGB (raw=False); everything else keeps its samples.
    return ts not in syntaxes.JPEG_LOSSY_FAMILY


# Encoder limits: a TranscodeError is expected only for these (anything else fails).
def _expected_refusal(pixel: PixelDescription, target: UID) -> str | None:
    if target in syntaxes.NATIVE:
        return None
    if pixel.bits_allocated == 1:
        return "bit-packed data is only written native"
    if pixel.bits_allocated == 32 and target != syntaxes.JPEG_2000_LOSSLESS:
        return "32-bit data"
    if target == syntaxes.RLE_LOSSLESS:
        return None
    if pixel.bits_allocated > 16 and target != syntaxes.JPEG_2000_LOSSLESS:
        return "more than 16 bits"
    if pixel.bits_stored > 24 or pixel.bits_allocated == 32:
        return "more than 24 bits"
    if min(pixel.rows, pixel.columns) < 8:
        return "tiny image"
    return None


@pytest.mark.parametrize("path", PIXEL_FILES, ids=_id)
def test_stored_frames_decode_like_pydicom(path: Path) -> None:
    ts, pixel, frames, vr = _stored_frames(path)
    for index, frame in frames:
        reference = _reference(path, index, _raw_for(ts))
        try:
            decoded = decode_frame(frame, ts, pixel, pixel_data_vr=vr)
        except TranscodeError as exc:
            if "straddle" in str(exc):
                pytest.skip(str(exc))
            pytest.fail(f"pydicom decodes frame {index} but decode_frame does not: {exc}")
        assert decoded.shape == reference.shape
        assert np.array_equal(decoded, reference), f"frame {index} differs"
        described = decoded_description(pixel, ts)
        assert described.planar_configuration == 0
        if pixel.samples_per_pixel == 3:
            assert described.photometric_interpretation in ("RGB", "YBR_FULL")


def _decode_with_pydicom(data: bytes, target: UID, pixel: PixelDescription) -> np.ndarray:
    options = pixel.decode_options()
    options.update(number_of_frames=1, pixel_keyword="PixelData")
    source = encapsulate([data]) if target.is_encapsulated else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array, _ = get_decoder(target).as_array(source, raw=True, **options)
    return array.astype(array.dtype.newbyteorder("="))


@pytest.mark.parametrize("target", FRAME_TARGETS, ids=lambda uid: uid.name.split(" (")[0])
@pytest.mark.parametrize("path", PIXEL_FILES, ids=_id)
def test_transcoded_frame_decodes_to_the_same_pixels(path: Path, target: UID) -> None:
    ts, pixel, frames, vr = _stored_frames(path)
    if pixel.rows * pixel.columns > LARGE and target not in COMMON_TARGETS:
        pytest.skip("large image: checked in the common syntaxes only, to keep the suite quick")
    if ts == syntaxes.EXPLICIT_VR_BIG_ENDIAN and pixel.bits_allocated == 8 and vr == "OW":
        pytest.skip("big endian 8-bit OW frames go through decode_frame(pixel_data_vr=...)")
    for index, frame in frames:
        reference = _reference(path, index, _raw_for(ts))
        try:
            encoded = transcode_frame(frame, ts, target, pixel)
        except TranscodeError as exc:
            reason = _expected_refusal(decoded_description(pixel, ts), target)
            if reason:
                pytest.skip(f"{target.name} cannot hold this image ({reason}): {exc}")
            raise
        described = transcoded_description(pixel, ts, target)
        back = _decode_with_pydicom(encoded, target, described)
        assert back.shape == reference.shape
        assert np.array_equal(back, reference), f"frame {index} differs after {target.name}"


def _small(path: Path) -> bool:
    return path.stat().st_size < 3_000_000


@cache
def _instance(path: Path, target: UID) -> bytes | TranscodeError:
    try:
        return transcode_instance(path, target)
    except TranscodeError as exc:
        return exc


# Whole instances: every file to the two syntaxes DIMSE peers ask for most, and a varied
# handful of files (colour, palette, multi-frame, signed, lossy, big endian, YBR) to every
# output syntax: the frame tests above already cover every file in every frame syntax.
VARIED = {
    "CT_small.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "US1_J2KI.dcm",
    "MR_small_bigendian.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_ybr_full_uncompressed.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "examples_ybr_color.dcm",
}
INSTANCE_CASES = [
    pytest.param(path, target, id=f"{path.name}-{target.name.split(' (')[0]}")
    for path in PIXEL_FILES
    if _small(path)
    for target in INSTANCE_TARGETS
    if target in COMMON_TARGETS or path.name in VARIED
]


@pytest.mark.parametrize(("path", "target"), INSTANCE_CASES)
def test_transcoded_instance_has_the_same_pixels(path: Path, target: UID) -> None:
    if isinstance(_parsed(path), InstanceRejected):
        pytest.skip("ingest refuses this file, so it is never transcoded")
    original = pydicom.dcmread(path, stop_before_pixels=True)
    pixel = _description(original)
    frame_count = int(original.get("NumberOfFrames", 1) or 1)
    references = {i: _reference(path, i, raw=False) for i in sorted({0, frame_count - 1})}
    result = _instance(path, target)
    if isinstance(result, TranscodeError):
        ts = UID(original.file_meta.TransferSyntaxUID)
        reason = _expected_refusal(decoded_description(pixel, ts), target)
        if reason:
            pytest.skip(f"{target.name} cannot hold this image ({reason}): {result}")
        raise result
    out = pydicom.dcmread(io.BytesIO(result))
    assert out.file_meta.TransferSyntaxUID == target
    assert out.get("SOPInstanceUID") == original.get("SOPInstanceUID")
    for index, reference in references.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if target == syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                # pydicom's pixel_array(file) does not inflate; the full read does.
                back = out.pixel_array
                back = back[index] if pixel.number_of_frames > 1 else back
            else:
                back = pixel_array(io.BytesIO(result), index=index)
        assert np.array_equal(back.astype(back.dtype.newbyteorder("=")), reference)
    if str(original.get("LossyImageCompression", "")).strip() == "01":
        assert out.LossyImageCompression == "01"
    if UID(original.file_meta.TransferSyntaxUID) in syntaxes.ALWAYS_LOSSY:
        assert out.LossyImageCompression == "01"
        assert "ISO_10918_1" in out.LossyImageCompressionMethod
