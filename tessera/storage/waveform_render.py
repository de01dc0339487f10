"""An ECG waveform (12-lead ECG and General ECG Waveform Storage) drawn as a tracing, for
/rendered and /thumbnail: one strip per channel of the first multiplex group, on ECG paper
(25 mm/s, 10 mm/mV, a 1 mm / 5 mm grid), dark lines on a light background.

Samples come from pydicom's `Dataset.waveform_array`, which applies Channel Sensitivity,
its correction factor and the baseline; the Channel Sensitivity Units (uV, mV, V) give the
vertical scale. A channel without sensitivity or units is scaled to its own range. A
waveform that cannot be read raises WaveformNotDrawable; callers draw
`pdf_render.placeholder` then.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.uid import GeneralECGWaveformStorage, TwelveLeadECGWaveformStorage

from tessera.storage.render import RenderOptions, encode_image, fit_to_viewport

ECG_WAVEFORMS = frozenset({str(TwelveLeadECGWaveformStorage), str(GeneralECGWaveformStorage)})

PX_PER_MM = 4
MM_PER_SECOND = 25
MM_PER_MV = 10
STRIP_MM = 30  # height of one channel's strip: +-1.5 mV around its baseline
MAX_SECONDS = 10  # a longer recording is drawn for its first ten seconds
LABEL_MM = 12  # left margin holding the lead's name
_TO_MV = {"uV": 0.001, "mV": 1.0, "V": 1000.0}
_PAPER = (255, 250, 250)
_MINOR = (250, 215, 215)
_MAJOR = (235, 160, 160)
_TRACE = (0, 0, 0)


class WaveformNotDrawable(ValueError):
    """The instance holds no waveform that can be drawn."""


def _channel_scale(group: Dataset, channel: int) -> float | None:
    """Millivolts per unit of `waveform_array`'s values for one channel, or None."""
    try:
        definition = group.ChannelDefinitionSequence[channel]
    except (AttributeError, IndexError):
        return None
    if not definition.get("ChannelSensitivity"):
        return None
    units = definition.get("ChannelSensitivityUnitsSequence")
    if not units:
        return None
    return _TO_MV.get(str(units[0].get("CodeValue", "")))


def _channel_label(group: Dataset, channel: int) -> str:
    try:
        source = group.ChannelDefinitionSequence[channel].ChannelSourceSequence[0]
    except (AttributeError, IndexError):
        return f"{channel + 1}"
    meaning = str(source.get("CodeMeaning", "")) or str(source.get("CodeValue", ""))
    # "Lead I (Einthoven)" -> "I"; "Lead V1" -> "V1".
    meaning = meaning.split("(")[0].strip()
    return meaning.removeprefix("Lead ").strip()[:8] or f"{channel + 1}"


def waveform_tracing(
    dataset: Dataset, box: tuple[int | None, int | None] | None = None
) -> Image.Image:
    """The first multiplex group of `dataset` drawn as an RGB image, at PX_PER_MM or, to fit
    a smaller `box` (columns, rows), at the scale that fits it: a thumbnail is drawn small
    rather than shrunk, so its lines stay dark."""
    groups = dataset.get("WaveformSequence")
    if not groups:
        raise WaveformNotDrawable("the instance holds no Waveform Sequence")
    group = groups[0]
    try:
        samples = np.asarray(dataset.waveform_array(0), dtype=np.float64)
        frequency = float(group.SamplingFrequency)
    except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise WaveformNotDrawable(f"the waveform cannot be read: {exc}") from exc
    if samples.ndim != 2 or samples.shape[0] < 2 or samples.shape[1] < 1 or frequency <= 0:
        raise WaveformNotDrawable("the waveform has no samples to draw")
    samples = samples[: int(MAX_SECONDS * frequency)]
    count, channels = samples.shape
    seconds = count / frequency
    width_mm = LABEL_MM + seconds * MM_PER_SECOND
    height_mm = STRIP_MM * channels
    px = float(PX_PER_MM)
    if box is not None:
        if box[0]:
            px = min(px, box[0] / width_mm)
        if box[1]:
            px = min(px, box[1] / height_mm)
    left = LABEL_MM * px
    width = max(round(width_mm * px), 1)
    strip = STRIP_MM * px
    height = max(round(height_mm * px), 1)
    image = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(image)
    for mm in range(0, int(max(width_mm, height_mm)) + 1):
        if mm % 5 and px < 2:
            continue  # the 1 mm grid would fill a small image
        if not mm % 5 and px < 0.8:
            continue
        colour = _MAJOR if mm % 5 == 0 else _MINOR
        at = mm * px
        if at < width:
            draw.line([(at, 0), (at, height)], fill=colour)
        if at < height:
            draw.line([(0, at), (width, at)], fill=colour)
    xs = left + np.arange(count) / frequency * MM_PER_SECOND * px
    for channel in range(channels):
        values = samples[:, channel]
        if not np.isfinite(values).all():
            values = np.nan_to_num(values)
        middle = strip * channel + strip / 2
        scale = _channel_scale(group, channel)
        if scale is not None:
            mv = (values - np.median(values)) * scale
            ys = middle - mv * MM_PER_MV * px
        else:  # no calibration: the channel's own range fills most of its strip
            span = float(values.max() - values.min()) or 1.0
            ys = middle - (values - float(values.mean())) / span * strip * 0.8
        ys = np.clip(ys, strip * channel + 1, strip * (channel + 1) - 2)
        line = 2 if px >= 2 else 1
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=_TRACE, width=line)
        if px >= 2:
            draw.text((4, strip * channel + 4), _channel_label(group, channel), fill=_TRACE)
    return image


def render_waveform(fh: BinaryIO, options: RenderOptions) -> bytes:
    """The tracing of a stored ECG instance as `options.media_type`."""
    try:
        dataset = pydicom.dcmread(fh)
    except (pydicom.errors.InvalidDicomError, ValueError, EOFError) as exc:
        raise WaveformNotDrawable(f"the instance cannot be read: {exc}") from exc
    image = waveform_tracing(dataset, options.viewport)
    return encode_image(fit_to_viewport(image, options), options)
