"""Rendered images: valid JPEG/PNG/GIF of the right size, and the display pipeline's values
(window functions, Modality LUT, VOI LUT, MONOCHROME1, palette and YBR colour) checked
on PNG output against the standard's formulas and pydicom's own colour functions."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array

from tessera.storage.pixels import PixelDescription
from tessera.storage.render import (
    RenderError,
    RenderOptions,
    Window,
    render_frame,
    render_gif,
)
from tessera.storage.transcode import decode_frame


def _header(path: str) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def _pixels(path: str, index: int = 0, raw: bool = True) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pixel_array(path, index=index, raw=raw)


def _png(header: Dataset, array: np.ndarray, **options) -> np.ndarray:  # type: ignore[no-untyped-def]
    data = render_frame(header, array, RenderOptions("image/png", **options))
    return np.asarray(Image.open(io.BytesIO(data)))


def _grey_header(photometric: str = "MONOCHROME2", bits: int = 16, signed: bool = False) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.Rows, ds.Columns = 4, 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    return ds


RAMP = np.arange(32, dtype=np.uint16).reshape(4, 8) * 10  # 0 .. 310


@pytest.mark.parametrize("media_type,fmt", [("image/jpeg", "JPEG"), ("image/png", "PNG")])
@pytest.mark.parametrize("name", ["CT_small.dcm", "US1_J2KR.dcm", "OBXXXX1A.dcm", "RG1_UNCR.dcm"])
def test_valid_image_of_the_right_size(name: str, media_type: str, fmt: str) -> None:
    path = get_testdata_file(name)
    header = _header(path)
    data = render_frame(header, _pixels(path), RenderOptions(media_type))
    image = Image.open(io.BytesIO(data))
    assert image.format == fmt
    assert image.size == (header.Columns, header.Rows)


def test_viewport_keeps_the_aspect_ratio() -> None:
    path = get_testdata_file("US1_J2KR.dcm")  # 640 x 480
    header = _header(path)
    array = _pixels(path)
    for viewport, size in (
        ((128, 128), (128, 96)),
        ((None, 240), (320, 240)),
        ((64, None), (64, 48)),
    ):
        data = render_frame(header, array, RenderOptions("image/jpeg", viewport=viewport))
        assert Image.open(io.BytesIO(data)).size == size


def test_quality_changes_jpeg_size() -> None:
    path = get_testdata_file("CT_small.dcm")
    header, array = _header(path), _pixels(path)
    low = render_frame(header, array, RenderOptions("image/jpeg", quality=10))
    high = render_frame(header, array, RenderOptions("image/jpeg", quality=95))
    assert len(low) < len(high)


def _linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0, np.where(x > c - 0.5 + (w - 1) / 2, 255, y))
    return np.rint(y)


def test_linear_window_values() -> None:
    out = _png(_grey_header(), RAMP, window=Window(150, 201))
    assert np.array_equal(out, _linear(RAMP.astype(float), 150, 201))


def test_linear_exact_and_sigmoid_windows() -> None:
    x = RAMP.astype(float)
    exact = _png(_grey_header(), RAMP, window=Window(100, 100, "LINEAR_EXACT"))
    expected = np.rint(np.clip(((x - 100) / 100 + 0.5) * 255, 0, 255))
    assert np.array_equal(exact, expected)
    sigmoid = _png(_grey_header(), RAMP, window=(100, 50, "sigmoid"))
    assert np.array_equal(sigmoid, np.rint(255 / (1 + np.exp(-4 * (x - 100) / 50))))


def test_window_from_dataset_and_rescale() -> None:
    header = _grey_header()
    header.RescaleSlope, header.RescaleIntercept = 2, -100
    header.WindowCenter, header.WindowWidth = 100, 201
    out = _png(header, RAMP)
    assert np.array_equal(out, _linear(RAMP.astype(float) * 2 - 100, 100, 201))


def test_given_window_beats_the_dataset_window() -> None:
    header = _grey_header()
    header.WindowCenter, header.WindowWidth = 0, 10
    out = _png(header, RAMP, window=Window(150, 201))
    assert np.array_equal(out, _linear(RAMP.astype(float), 150, 201))


def test_min_max_window_when_the_dataset_has_none_signed() -> None:
    header = _grey_header(signed=True)
    values = (RAMP.astype(np.int16) - 200).astype(np.int16)  # -200 .. 110
    out = _png(header, values)
    assert out.min() == 0 and out.max() == 255
    assert out[0, 0] == 0 and out[-1, -1] == 255


def test_monochrome1_is_inverted() -> None:
    path = get_testdata_file("RG1_UNCR.dcm")
    header = _header(path)
    array = _pixels(path)
    assert header.PhotometricInterpretation == "MONOCHROME1"
    as_mono2 = _header(path)
    as_mono2.PhotometricInterpretation = "MONOCHROME2"
    inverted, plain = _png(header, array), _png(as_mono2, array)
    assert np.array_equal(inverted.astype(int), 255 - plain.astype(int))
    synthetic = _png(_grey_header("MONOCHROME1"), RAMP, window=Window(150, 201))
    assert np.array_equal(synthetic, 255 - _linear(RAMP.astype(float), 150, 201))


def test_voi_lut_sequence_is_applied() -> None:
    path = get_testdata_file("vlut_04.dcm")
    header, array = _header(path), _pixels(path)
    item = header.VOILUTSequence[0]
    from pydicom.pixels import apply_voi_lut

    lut_values = apply_voi_lut(array, header, prefer_lut=True).astype(float)
    expected = np.rint(np.clip(lut_values * 255 / ((1 << int(item.LUTDescriptor[2])) - 1), 0, 255))
    assert np.array_equal(_png(header, array), expected)


def test_modality_lut_sequence_is_applied() -> None:
    path = get_testdata_file("mlut_18.dcm")
    header, array = _header(path), _pixels(path)
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(array, header).astype(float)
    out = _png(header, array, window=Window(float(values.mean()), 2001))
    assert np.array_equal(out, _linear(values, float(values.mean()), 2001))


def test_palette_colour_matches_pydicom() -> None:
    path = get_testdata_file("OBXXXX1A.dcm")
    header, array = _header(path), _pixels(path)
    expected = apply_color_lut(array, header)
    expected = (expected >> 8).astype(np.uint8) if expected.dtype != np.uint8 else expected
    assert np.array_equal(_png(header, array), expected)


def test_ybr_full_is_converted_like_pydicom() -> None:
    path = get_testdata_file("SC_rgb_rle.dcm")
    header, rgb = _header(path), _pixels(path)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    header.PhotometricInterpretation = "YBR_FULL"
    header.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    assert np.array_equal(_png(header, ybr), convert_color_space(ybr, "YBR_FULL", "RGB"))


def test_jpeg_ybr_frame_decoded_by_the_codecs_renders_as_rgb() -> None:
    path = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")  # JPEG baseline, YBR_FULL
    ds = pydicom.dcmread(path)
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    array = decode_frame(frame, ds.file_meta.TransferSyntaxUID, PixelDescription.from_dataset(ds))
    assert np.array_equal(_png(_header(path), array), ds.pixel_array)


def test_rgb_16_bit_is_scaled_to_8_bits() -> None:
    path = get_testdata_file("SC_rgb_rle_16bit.dcm")
    header, array = _header(path), _pixels(path)
    assert np.array_equal(_png(header, array), (array >> 8).astype(np.uint8))


def test_multi_frame_cine_gif() -> None:
    path = get_testdata_file("SC_rgb_rle_2frame.dcm")
    header = _header(path)
    frames = [_pixels(path, index=i) for i in range(2)]
    data = render_gif(header, frames, RenderOptions("image/gif", viewport=(50, 50)))
    image = Image.open(io.BytesIO(data))
    assert image.format == "GIF" and image.n_frames == 2 and image.size == (50, 50)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Window(40, 0),
        lambda: Window(40, 0.5, "LINEAR"),
        lambda: Window(40, 400, "CUBIC"),
        lambda: RenderOptions("image/tiff"),
        lambda: RenderOptions("image/jpeg", quality=0),
        lambda: RenderOptions("image/jpeg", viewport=(-5, 10)),
    ],
)
def test_bad_options_raise_render_error(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RenderError):
        make()


def test_enhanced_multi_frame_functional_groups_pick_the_frame() -> None:
    header = _grey_header()
    shared = Dataset()
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 1, -1000
    shared.PixelValueTransformationSequence = [transform]
    header.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for center in (-900, -800):
        item, voi = Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 201
        item.FrameVOILUTSequence = [voi]
        frames.append(item)
    header.PerFrameFunctionalGroupsSequence = frames
    values = RAMP.astype(float) - 1000
    for index, center in enumerate((-900, -800)):
        data = render_frame(header, RAMP, RenderOptions("image/png"), frame_index=index)
        out = np.asarray(Image.open(io.BytesIO(data)))
        assert np.array_equal(out, _linear(values, center, 201))
