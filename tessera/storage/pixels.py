"""What one frame of Pixel Data looks like: the Image Pixel module values codecs need.

Interface (stable; used by dicomweb/ and scp/):

- ``PixelDescription``: frozen dataclass with ``rows, columns, samples_per_pixel,
  bits_allocated, bits_stored, high_bit, pixel_representation,
  photometric_interpretation, planar_configuration, number_of_frames``.
- ``PixelDescription.from_dataset(ds: pydicom.Dataset) -> PixelDescription``
- ``PixelDescription.from_dicom_json(metadata: dict) -> PixelDescription`` for the DICOM
  JSON stored in the index (keys like ``"00280010"``, values ``{"vr": .., "Value": [..]}``).
- ``PixelDescription.frame_length -> int``: bytes of one native frame (0 if bit-packed
  frames do not fill whole bytes).
- ``PixelDescription.decode_options() -> dict``: the keyword arguments pydicom's
  decoders and encoders take for a buffer source.
- ``PixelDescription.replace(**changes) -> PixelDescription``

Both constructors raise ``ValueError`` when the required Image Pixel attributes (Rows,
Columns, Bits Allocated) are missing or not numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

_ROWS = "00280010"
_COLUMNS = "00280011"
_SAMPLES = "00280002"
_BITS_ALLOCATED = "00280100"
_BITS_STORED = "00280101"
_HIGH_BIT = "00280102"
_PIXEL_REPRESENTATION = "00280103"
_PHOTOMETRIC = "00280004"
_PLANAR = "00280006"
_FRAMES = "00280008"


def _int(value: Any, default: int | None = None) -> int:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None or value == "":
        if default is None:
            raise ValueError("missing required Image Pixel attribute")
        return default
    return int(str(value).strip())


@dataclass(frozen=True, slots=True)
class PixelDescription:
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int

    @classmethod
    def _build(cls, get: Any) -> PixelDescription:
        bits_allocated = _int(get("BitsAllocated", _BITS_ALLOCATED))
        bits_stored = _int(get("BitsStored", _BITS_STORED), bits_allocated)
        samples = _int(get("SamplesPerPixel", _SAMPLES), 1)
        photometric = get("PhotometricInterpretation", _PHOTOMETRIC)
        photometric = str(photometric or ("RGB" if samples == 3 else "MONOCHROME2")).strip()
        return cls(
            rows=_int(get("Rows", _ROWS)),
            columns=_int(get("Columns", _COLUMNS)),
            samples_per_pixel=samples,
            bits_allocated=bits_allocated,
            bits_stored=bits_stored,
            high_bit=_int(get("HighBit", _HIGH_BIT), bits_stored - 1),
            pixel_representation=_int(get("PixelRepresentation", _PIXEL_REPRESENTATION), 0),
            photometric_interpretation=photometric,
            planar_configuration=_int(get("PlanarConfiguration", _PLANAR), 0) if samples > 1 else 0,
            number_of_frames=max(_int(get("NumberOfFrames", _FRAMES), 1), 1),
        )

    @classmethod
    def from_dataset(cls, ds: Dataset) -> PixelDescription:
        """Describe the Pixel Data of a pydicom Dataset (pixel data itself not needed)."""

        def get(keyword: str, _tag: str) -> Any:
            try:
                return ds.get(keyword)
            except Exception:  # a malformed value reads as absent
                return None

        try:
            return cls._build(get)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dataset has no usable Image Pixel description: {exc}") from exc

    @classmethod
    def from_dicom_json(cls, metadata: dict[str, Any]) -> PixelDescription:
        """Describe the Pixel Data from DICOM JSON (PS3.18 F.2) as stored in the index."""

        def get(_keyword: str, tag: str) -> Any:
            element = metadata.get(tag)
            if not element:
                return None
            values = element.get("Value")
            return values[0] if values else None

        try:
            return cls._build(get)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata has no usable Image Pixel description: {exc}") from exc

    @property
    def frame_length(self) -> int:
        """Bytes of one frame in native encoding (0 when frames are bit-packed across bytes)."""
        samples = self.samples_per_pixel
        if self.photometric_interpretation == "YBR_FULL_422":
            samples = 2  # two chroma samples shared by each pair of pixels (PS3.3 C.7.6.3.1.2)
        bits = self.rows * self.columns * samples * self.bits_allocated
        return bits // 8 if bits % 8 == 0 else 0

    def decode_options(self) -> dict[str, Any]:
        """Keyword arguments for pydicom's Decoder/Encoder with a buffer source."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "planar_configuration": self.planar_configuration,
            "number_of_frames": self.number_of_frames,
        }

    def replace(self, **changes: Any) -> PixelDescription:
        return dataclasses.replace(self, **changes)
