"""Rendered images (PS3.18 §8.3.5, §10.4.1.1.3): a frame's pixels as a JPEG, PNG or GIF.

Interface (stable; used by dicomweb/ for /rendered, /thumbnail and WADO-URI):

- ``Window(center: float, width: float, function: str = "LINEAR")``: function is one of
  ``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID`` (PS3.3 C.11.2.1.2/3).
- ``RenderOptions(media_type="image/jpeg", window=None, viewport=None, quality=None)``:
  ``media_type`` ``image/jpeg``, ``image/png`` or ``image/gif``; ``viewport`` a
  (width, height) box the image is scaled to fit, keeping its aspect ratio (either may be
  None: derived from the other); ``quality`` 1-100 for JPEG (default 90).
- ``RENDER_MEDIA_TYPES``: the media types accepted.
- ``render_frame(header, frame_array, options, *, pixel=None, frame_index=0) -> bytes``
- ``render_gif(header, frame_arrays, options, *, pixel=None, frame_time_ms=None) -> bytes``
  an animated GIF of several frames (multi-frame cine), timed by ``frame_time_ms`` or
  ``cine_frame_time_ms(header)`` (Frame Time, Cine Rate, Recommended Display Frame Rate).
- ``RenderError(ValueError)``: the options or the header cannot be rendered (e.g. a window
  width below 1); callers answer 400.

``header`` is the instance's dataset read with ``stop_before_pixels=True`` (from the
stored file, so palette and LUT data, which the index's JSON holds as bulk data, are
present). What it needs: Photometric Interpretation, Samples per Pixel, Bits Stored,
Pixel Representation; Rescale Slope/Intercept or Modality LUT Sequence; Window
Center/Width, VOI LUT Function or VOI LUT Sequence; the Red/Green/Blue Palette Color
Lookup Table Descriptors and Data (or Segmented data) for PALETTE COLOR; for enhanced
multi-frame objects the Shared/Per-frame Functional Groups (Pixel Value Transformation,
Frame VOI LUT) at ``frame_index``.

``frame_array`` is what ``transcode.decode_frame`` returns. ``pixel`` describes it
(``transcode.decoded_description``); when None it is derived from the header and the
header's file meta Transfer Syntax UID (so a JPEG YBR_FULL_422 image is taken as RGB).

Grey pipeline: Modality LUT (rescale or LUT) -> VOI (the given window; else the
dataset's VOI LUT Sequence or first window; else the frame's min/max) -> 8-bit ->
MONOCHROME1 inverted. Colour: PALETTE COLOR through its palette, YBR_FULL to RGB,
RGB of more than 8 bits scaled to 8 bits; windows do not apply to colour.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, convert_color_space

from tessera.storage.pixels import PixelDescription

RENDER_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif")
WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


class RenderError(ValueError):
    """The frame cannot be rendered with these options."""


@dataclass(frozen=True, slots=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self) -> None:
        function = self.function.upper()
        if function not in WINDOW_FUNCTIONS:
            raise RenderError(f"window function {self.function!r} is not one of {WINDOW_FUNCTIONS}")
        object.__setattr__(self, "function", function)
        width = float(self.width)
        if function == "LINEAR" and not width >= 1:
            raise RenderError("window width must be >= 1 for LINEAR")
        if function != "LINEAR" and not width > 0:
            raise RenderError(f"window width must be > 0 for {function}")


@dataclass(frozen=True, slots=True)
class RenderOptions:
    media_type: str = "image/jpeg"
    window: Window | tuple | None = None
    viewport: tuple[int | None, int | None] | None = None
    quality: int | None = None

    def __post_init__(self) -> None:
        if self.media_type not in RENDER_MEDIA_TYPES:
            raise RenderError(f"cannot render as {self.media_type}")
        if self.window is not None and not isinstance(self.window, Window):
            object.__setattr__(self, "window", Window(*self.window))
        if self.quality is not None and not 1 <= int(self.quality) <= 100:
            raise RenderError("quality must be between 1 and 100")
        if self.viewport is not None:
            width, height = self.viewport
            if not width and not height:
                object.__setattr__(self, "viewport", None)
            elif (width is not None and width < 0) or (height is not None and height < 0):
                raise RenderError("viewport sizes must be positive")


# --- VOI and modality -----------------------------------------------------------------


def _apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Window to 0..255 floats (PS3.3 C.11.2.1.2)."""
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    if window.function == "LINEAR_EXACT":
        out = ((values - c) / w + 0.5) * 255.0
    elif w <= 1:
        return np.where(values <= c - 0.5, 0.0, 255.0)
    else:
        out = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return np.clip(out, 0.0, 255.0, out=out)


def _functional_item(header: Dataset, sequence: str, frame_index: int) -> Dataset | None:
    """The item of a functional group macro for one frame (per-frame first, then shared)."""
    for groups, index in (
        ("PerFrameFunctionalGroupsSequence", frame_index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = header.get(groups)
        if items and index < len(items):
            inner = items[index].get(sequence)
            if inner:
                return inner[0]
    return None


def _first(value: Any) -> float:
    if (
        isinstance(value, list | tuple)
        or hasattr(value, "__getitem__")
        and not isinstance(value, str | bytes)
    ):
        value = value[0]
    return float(value)


def _modality(header: Dataset, array: np.ndarray, frame_index: int) -> np.ndarray:
    transform = _functional_item(header, "PixelValueTransformationSequence", frame_index)
    if transform is not None and "RescaleSlope" in transform:
        source = transform
    elif "ModalityLUTSequence" in header:
        return apply_modality_lut(array, header).astype(np.float32, copy=False)
    else:
        source = header
    try:
        slope = _first(source.get("RescaleSlope", 1) or 1)
        intercept = _first(source.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        slope, intercept = 1.0, 0.0
    values = array.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def _dataset_window(header: Dataset, frame_index: int) -> Window | None:
    item = _functional_item(header, "FrameVOILUTSequence", frame_index)
    for source in (item, header):
        if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
            continue
        try:
            function = str(source.get("VOILUTFunction") or "LINEAR").strip() or "LINEAR"
            return Window(_first(source.WindowCenter), _first(source.WindowWidth), function)
        except (TypeError, ValueError, IndexError, RenderError):
            continue
    return None


def _voi_lut(header: Dataset, values: np.ndarray) -> np.ndarray | None:
    items = header.get("VOILUTSequence")
    if not items:
        return None
    try:
        descriptor = items[0].LUTDescriptor
        bits = int(descriptor[2])
        mapped = apply_voi_lut(np.rint(values).astype(np.int64), header, prefer_lut=True)
    except Exception:
        return None  # a broken LUT falls back to the window or min/max
    top = float((1 << bits) - 1) if bits > 0 else float(mapped.max() or 1)
    return np.clip(mapped.astype(np.float32) * (255.0 / top), 0, 255)


def _auto_window(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return (values - low) * np.float32(255.0 / (high - low))


def _grey(
    header: Dataset,
    array: np.ndarray,
    pixel: PixelDescription,
    options: RenderOptions,
    frame_index: int,
) -> np.ndarray:
    values = _modality(header, array, frame_index)
    lut = None if options.window is not None else _voi_lut(header, values)
    if isinstance(options.window, Window):  # RenderOptions makes a given window a Window
        display = _apply_window(values, options.window)
    elif lut is not None:
        display = lut
    else:
        window = _dataset_window(header, frame_index)
        display = _apply_window(values, window) if window else _auto_window(values)
    out = np.rint(display).astype(np.uint8)
    if pixel.photometric_interpretation == "MONOCHROME1":
        np.subtract(255, out, out=out)
    return out


def _to_8bit(array: np.ndarray, bits_stored: int) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    shift = max(int(bits_stored) - 8, 0)
    return np.clip(array.astype(np.int64) >> shift, 0, 255).astype(np.uint8)


def _colour(header: Dataset, array: np.ndarray, pixel: PixelDescription) -> np.ndarray:
    photometric = pixel.photometric_interpretation
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(array, header)
        if rgb.dtype != np.uint8:
            # 16-bit palette entries (PS3.3 C.7.6.3.1.5): keep the high byte.
            rgb = (rgb >> 8).astype(np.uint8)
        return rgb
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        return convert_color_space(_to_8bit(array, pixel.bits_stored), "YBR_FULL", "RGB")
    if array.ndim == 3 and array.shape[-1] == 3:
        return _to_8bit(array, pixel.bits_stored)
    raise RenderError(f"cannot render photometric interpretation {photometric}")


def _display_array(
    header: Dataset,
    array: np.ndarray,
    pixel: PixelDescription,
    options: RenderOptions,
    frame_index: int,
) -> np.ndarray:
    if pixel.samples_per_pixel == 1 and pixel.photometric_interpretation != "PALETTE COLOR":
        if array.ndim != 2:
            raise RenderError(f"expected one frame of shape (rows, columns), got {array.shape}")
        return _grey(header, array, pixel, options, frame_index)
    return _colour(header, array, pixel)


def _describe(header: Dataset, pixel: PixelDescription | None) -> PixelDescription:
    if pixel is not None:
        return pixel
    from tessera.storage.transcode import decoded_description

    try:
        described = PixelDescription.from_dataset(header)
    except ValueError as exc:
        raise RenderError(str(exc)) from exc
    meta = getattr(header, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return decoded_description(described, syntax) if syntax else described


def _fit(image: Image.Image, viewport: tuple[int | None, int | None] | None) -> Image.Image:
    if viewport is None:
        return image
    box_width, box_height = viewport
    width, height = image.size
    scales = [s for s in (box_width and box_width / width, box_height and box_height / height) if s]
    scale = min(scales)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == image.size:
        return image
    # reducing_gap makes large downscales fast with near-LANCZOS quality.
    return image.resize(
        size,
        Image.Resampling.BILINEAR if scale >= 1 else Image.Resampling.LANCZOS,
        reducing_gap=2.0 if scale < 0.5 else None,
    )


def _image(
    header: Dataset,
    array: np.ndarray,
    pixel: PixelDescription,
    options: RenderOptions,
    frame_index: int,
) -> Image.Image:
    display = _display_array(header, array, pixel, options, frame_index)
    image = Image.fromarray(np.ascontiguousarray(display), "L" if display.ndim == 2 else "RGB")
    return _fit(image, options.viewport)


def render_frame(
    header: Dataset,
    frame_array: np.ndarray,
    options: RenderOptions,
    *,
    pixel: PixelDescription | None = None,
    frame_index: int = 0,
) -> bytes:
    """One frame as ``options.media_type`` (see the module docstring for the pipeline)."""
    described = _describe(header, pixel)
    image = _image(header, frame_array, described, options, frame_index)
    buffer = io.BytesIO()
    if options.media_type == "image/jpeg":
        image.save(buffer, "JPEG", quality=int(options.quality or 90))
    elif options.media_type == "image/png":
        image.save(buffer, "PNG", compress_level=3)
    else:
        image.save(buffer, "GIF")
    return buffer.getvalue()


def cine_frame_time_ms(header: Dataset) -> float:
    """Time per frame for cine: Frame Time, else Cine Rate / Recommended Display Frame Rate."""
    value = header.get("FrameTime")
    if value:
        return float(value)
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        value = header.get(keyword)
        if value:
            return 1000.0 / float(value)
    return 100.0


def render_gif(
    header: Dataset,
    frame_arrays: Iterable[np.ndarray],
    options: RenderOptions,
    *,
    pixel: PixelDescription | None = None,
    frame_time_ms: float | None = None,
) -> bytes:
    """Several frames as an animated GIF looping forever (cine), timed by the dataset."""
    described = _describe(header, pixel)
    images = [
        _image(header, array, described, options, index) for index, array in enumerate(frame_arrays)
    ]
    if not images:
        raise RenderError("no frames to render")
    if images[0].mode == "RGB":
        # One shared adaptive palette keeps colours steady from frame to frame.
        palette = images[0].quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        images = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    duration = int(
        round(frame_time_ms if frame_time_ms is not None else cine_frame_time_ms(header))
    )
    buffer = io.BytesIO()
    images[0].save(
        buffer, "GIF", save_all=True, append_images=images[1:], duration=max(duration, 20), loop=0
    )
    return buffer.getvalue()
