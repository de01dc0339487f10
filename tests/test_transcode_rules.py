"""The rules around transcoding: lossy stays lossy, the SOP Instance UID stays, the "may be
lossy" syntaxes get lossless codestreams, HTJ2K output meets the RPCL constraints, frames
pass through unchanged when they can, and what cannot be done is a TranscodeError."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import orjson
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder

from tessera.storage import syntaxes
from tessera.storage.dicom_json import build_metadata
from tessera.storage.lossy import frame_is_lossy
from tessera.storage.pixels import PixelDescription
from tessera.storage.transcode import (
    TranscodeError,
    can_decode,
    can_encode,
    decode_dataset_frame,
    decode_frame,
    decoded_description,
    encode_frame,
    output_syntaxes,
    transcode_frame,
    transcode_instance,
    transcoded_description,
)


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _first_frame(path: str) -> tuple[bytes, pydicom.uid.UID, PixelDescription]:
    ds = pydicom.dcmread(path)
    pixel = PixelDescription.from_dataset(ds)
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_encapsulated:
        frame = next(generate_frames(ds.PixelData, number_of_frames=pixel.number_of_frames))
    else:
        frame = ds.PixelData[: pixel.frame_length]
    return frame, ts, pixel


# --- lossy compression attributes ------------------------------------------------------


def test_jpeg_baseline_decompressed_stays_lossy_with_its_method() -> None:
    path = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")
    original = pydicom.dcmread(path)
    out = _read(transcode_instance(path, syntaxes.JPEG_2000_LOSSLESS))
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == original.LossyImageCompressionMethod
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert out.PhotometricInterpretation == "YBR_RCT"  # RGB after JPEG decoding, then RCT


def test_lossy_jpeg_2000_without_method_gains_method_and_ratio() -> None:
    path = get_testdata_file("US1_J2KI.dcm")  # "01", no method
    out = _read(transcode_instance(path, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN))
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_15444_1"
    assert "LossyImageCompressionRatio" in out  # the source had one already: kept
    assert out.PhotometricInterpretation == "RGB"


def test_unmarked_near_lossless_jpeg_ls_is_marked_lossy() -> None:
    path = get_testdata_file("JPEGLSNearLossless_16.dcm")  # no Lossy Image Compression
    frame, ts, _ = _first_frame(path)
    assert frame_is_lossy(frame, ts)
    out = _read(transcode_instance(path, syntaxes.RLE_LOSSLESS))
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_14495_1"
    assert float(out.LossyImageCompressionRatio) > 1


def test_lossless_source_is_not_marked_lossy() -> None:
    path = get_testdata_file("US1_J2KR.dcm")  # "00"
    out = _read(transcode_instance(path, syntaxes.HTJ2K_LOSSLESS))
    assert out.LossyImageCompression == "00"
    assert "LossyImageCompressionMethod" not in out


def test_lossy_mark_of_a_native_image_is_never_reset() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.LossyImageCompression = "01"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    for target in (syntaxes.JPEG_2000_LOSSLESS, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN):
        assert _read(transcode_instance(buffer.getvalue(), target)).LossyImageCompression == "01"


def test_codestream_lossiness() -> None:
    lossy, ts, _ = _first_frame(get_testdata_file("US1_J2KI.dcm"))
    assert frame_is_lossy(lossy, ts)
    lossless, ts, _ = _first_frame(get_testdata_file("US1_J2KR.dcm"))
    assert not frame_is_lossy(lossless, syntaxes.JPEG_2000)  # reversible 5-3 under .91
    frame, ts, pixel = _first_frame(get_testdata_file("CT_small.dcm"))
    for target in (syntaxes.JPEG_2000, syntaxes.HTJ2K, syntaxes.JPEG_LS_NEAR_LOSSLESS):
        assert not frame_is_lossy(transcode_frame(frame, ts, target, pixel), target)


# --- "may be lossy" syntaxes and HTJ2K RPCL ---------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "US1_J2KR.dcm", "SC_rgb_rle_2frame.dcm"])
def test_may_be_lossy_syntaxes_carry_lossless_codestreams(name: str) -> None:
    frame, ts, pixel = _first_frame(get_testdata_file(name))
    reference = decode_frame(frame, ts, pixel)
    for alias, lossless in syntaxes.LOSSLESS_ENCODER_OF.items():
        assert alias in output_syntaxes()
        encoded = transcode_frame(frame, ts, alias, pixel)
        assert encoded == encode_frame(reference, decoded_description(pixel, ts), lossless)
        described = transcoded_description(pixel, ts, alias)
        options = described.decode_options()
        options.update(number_of_frames=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back, _ = get_decoder(alias).as_array(encapsulate([encoded]), raw=True, **options)
        assert np.array_equal(back, reference)


def _cod(codestream: bytes) -> tuple[int, int]:
    """(progression order, decomposition levels) from the COD marker."""
    at = codestream.find(b"\xff\x52")
    return codestream[at + 5], codestream[at + 4 + 1 + 4]


@pytest.mark.parametrize("shape", [(512, 512), (300, 2000), (20, 30)])
def test_htj2k_output_meets_the_rpcl_constraints(shape: tuple[int, int]) -> None:
    rows, columns = shape
    array = (np.arange(rows * columns, dtype=np.uint32) % 4096).astype(np.uint16).reshape(shape)
    pixel = PixelDescription(rows, columns, 1, 16, 12, 11, 0, "MONOCHROME2", 0, 1)
    encoded = encode_frame(array, pixel, syntaxes.HTJ2K_LOSSLESS_RPCL)
    progression, levels = _cod(encoded)
    assert progression == 2  # RPCL
    assert max(rows, columns) / 2**levels <= 64
    assert b"\xff\x55" in encoded[: encoded.find(b"\xff\x90")]  # TLM in the main header
    assert np.array_equal(decode_frame(encoded, syntaxes.HTJ2K_LOSSLESS_RPCL, pixel), array)


# --- pass-through, descriptions, errors -------------------------------------------------


def test_same_syntax_and_native_to_native_pass_through() -> None:
    frame, ts, pixel = _first_frame(get_testdata_file("US1_J2KR.dcm"))
    assert transcode_frame(frame, ts, ts, pixel) == frame
    native, ts, pixel = _first_frame(get_testdata_file("CT_small.dcm"))
    assert transcode_frame(native, ts, syntaxes.IMPLICIT_VR_LITTLE_ENDIAN, pixel) == native
    path = get_testdata_file("CT_small.dcm")
    with open(path, "rb") as fh:
        assert transcode_instance(path, ts) == fh.read()


def test_descriptions_say_what_comes_out() -> None:
    frame, ts, pixel = _first_frame(get_testdata_file("examples_ybr_color.dcm"))
    assert pixel.photometric_interpretation == "YBR_FULL_422"
    native = transcoded_description(pixel, ts, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN)
    assert native.photometric_interpretation == "RGB"
    assert native.planar_configuration == 0
    data = transcode_frame(frame, ts, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, pixel)
    assert len(data) == native.frame_length
    assert transcoded_description(pixel, ts, ts) == pixel
    rgb = pixel.replace(photometric_interpretation="RGB")
    j2k = transcoded_description(rgb, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, syntaxes.HTJ2K)
    assert j2k.photometric_interpretation == "YBR_RCT"


def test_big_endian_frame_decodes() -> None:
    path = get_testdata_file("MR_small_bigendian.dcm")
    frame, ts, pixel = _first_frame(path)
    assert ts == syntaxes.EXPLICIT_VR_BIG_ENDIAN
    reference = pydicom.dcmread(path).pixel_array
    assert np.array_equal(decode_frame(frame, ts, pixel), reference)
    little = transcode_frame(frame, ts, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, pixel)
    assert little == reference.astype("<i2").tobytes()


@pytest.mark.parametrize("name", ["CT_small.dcm", "US1_J2KR.dcm", "OBXXXX1A.dcm", "emri_small.dcm"])
def test_pixel_description_from_stored_json_matches_the_dataset(name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    stored = orjson.loads(build_metadata(ds, "1.2", "1.2.3", "1.2.3.4", "OW"))
    assert PixelDescription.from_dicom_json(stored) == PixelDescription.from_dataset(ds)
    with pytest.raises(ValueError):
        PixelDescription.from_dicom_json({})


def test_what_cannot_be_done_is_a_transcode_error() -> None:
    frame, ts, pixel = _first_frame(get_testdata_file("CT_small.dcm"))
    assert not can_encode("1.2.3.4") and not can_decode("1.2.3.4")
    assert not can_encode(syntaxes.JPEG_BASELINE)  # no lossy output
    with pytest.raises(TranscodeError):
        transcode_frame(frame, ts, syntaxes.JPEG_BASELINE, pixel)
    with pytest.raises(TranscodeError):
        transcode_frame(frame, "1.2.840.10008.1.2.4.100", syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, pixel)
    with pytest.raises(TranscodeError):
        decode_frame(b"\xff\xd8 not a jpeg", syntaxes.JPEG_BASELINE, pixel)
    with pytest.raises(TranscodeError):
        decode_frame(frame[:100], ts, pixel)  # truncated native frame
    j2k, j2k_ts, j2k_pixel = _first_frame(get_testdata_file("US1_J2KR.dcm"))
    with pytest.raises(TranscodeError):  # deflated is a whole-instance syntax
        transcode_frame(j2k, j2k_ts, syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, j2k_pixel)
    with pytest.raises(TranscodeError):
        transcode_instance(b"not dicom at all", syntaxes.EXPLICIT_VR_LITTLE_ENDIAN)
    rtplan = get_testdata_file("rtplan.dcm")  # no Pixel Data
    with pytest.raises(TranscodeError):
        transcode_instance(rtplan, syntaxes.JPEG_2000_LOSSLESS)
    out = _read(transcode_instance(rtplan, syntaxes.IMPLICIT_VR_LITTLE_ENDIAN))
    assert out.file_meta.TransferSyntaxUID == syntaxes.IMPLICIT_VR_LITTLE_ENDIAN


def test_frame_of_a_bigger_than_16_bit_image_is_refused_by_htj2k() -> None:
    pixel = PixelDescription(8, 8, 1, 32, 32, 31, 0, "MONOCHROME2", 0, 1)
    with pytest.raises(TranscodeError):
        encode_frame(np.zeros((8, 8), np.uint32), pixel, syntaxes.HTJ2K_LOSSLESS)


def test_struct_sanity_of_native_output() -> None:
    pixel = PixelDescription(2, 2, 1, 16, 16, 15, 1, "MONOCHROME2", 0, 1)
    data = encode_frame(
        np.array([[-1, 2], [3, -4]], np.int16), pixel, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN
    )
    assert struct.unpack("<4h", data) == (-1, 2, 3, -4)


@pytest.mark.parametrize(
    "name", ["image_dfl.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm"]
)
def test_frames_of_a_dataset_read_whole_match_stored_frames(name: str) -> None:
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    ts = ds.file_meta.TransferSyntaxUID
    pixel = PixelDescription.from_dataset(ds)
    last = pixel.number_of_frames - 1
    whole = decode_dataset_frame(ds, last)
    if ts == syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        # an inflated frame is little endian native bytes
        frame = ds.PixelData[last * pixel.frame_length : (last + 1) * pixel.frame_length]
    else:
        frames = list(generate_frames(ds.PixelData, number_of_frames=pixel.number_of_frames))
        frame = frames[last]
    assert np.array_equal(whole, decode_frame(frame, ts, pixel))
    with pytest.raises(TranscodeError):
        decode_dataset_frame(ds, pixel.number_of_frames + 5)
