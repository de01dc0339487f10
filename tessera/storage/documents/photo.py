"""Photos as VL Photographic Image Storage (PS3.3 A.33.4, modality XC).

Why VL Photographic and not Secondary Capture: the uploads are pictures of the patient or
of paper taken with a camera or phone, which is what the VL Photographic IOD describes
(visible-light photography); Secondary Capture is for images converted from another
modality's output. Viewers (OHIF included) show both alike.

A baseline JPEG (SOF0, 8-bit, 1 or 3 components) is stored as it is, in the JPEG Baseline
transfer syntax: no re-compression, no quality loss, no growth. Anything else (PNG,
progressive or CMYK JPEG) is decoded with Pillow and stored uncompressed (Explicit VR Little
Endian) as MONOCHROME2 or RGB, 8 bits; transparency is flattened onto white.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, VLPhotographicImageStorage

from tessera.storage.documents.common import DocumentDescription, new_document_dataset

# Pillow's decompression-bomb guard, made an error rather than a warning.
MAX_PIXELS = 100_000_000


class UnreadableImage(ValueError):
    """The bytes claim to be an image but cannot be decoded."""


@dataclass(frozen=True)
class JpegFrame:
    """What a JPEG's start-of-frame segment says."""

    process: int  # 0: baseline, 1: extended, 2: progressive, ...
    precision: int
    rows: int
    columns: int
    components: int
    subsampled: bool
    adobe_transform: int | None  # APP14 "Adobe" colour transform, None when absent


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """Read the markers up to the first SOF; None when the stream is not a readable JPEG."""
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    adobe: int | None = None
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position + 4 : position + 2 + length]
        if marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            adobe = segment[11]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if len(segment) < 6:
                return None
            components = segment[5]
            factors = [
                segment[6 + 3 * i + 1] for i in range(components) if 8 + 3 * i < len(segment)
            ]
            return JpegFrame(
                process=marker - 0xC0,
                precision=segment[0],
                rows=int.from_bytes(segment[1:3], "big"),
                columns=int.from_bytes(segment[3:5], "big"),
                components=components,
                subsampled=len(set(factors)) > 1,
                adobe_transform=adobe,
            )
        position += 2 + length
    return None


def _stored_as_is(frame: JpegFrame | None) -> bool:
    return (
        frame is not None
        and frame.process == 0
        and frame.precision == 8
        and frame.rows > 0
        and frame.columns > 0
        and (
            frame.components == 1 or (frame.components == 3 and frame.adobe_transform in (None, 1))
        )
    )


def photographic_image(
    study: Dataset, image: bytes, description: DocumentDescription
) -> tuple[Dataset, str]:
    """(the VL Photographic Image, its transfer syntax UID)."""
    ds = new_document_dataset(study, VLPhotographicImageStorage, "XC", description)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    # Type 2C: unknown for an uploaded photo, so present and empty.
    ds.Laterality = ""
    ds.PatientOrientation = ""
    ds.AcquisitionDateTime = ds.ContentDate + ds.ContentTime
    ds.BurnedInAnnotation = "NO"
    ds.AcquisitionContextSequence = []  # Type 2: nothing is known of how it was taken
    ds.ImageComments = description.title[:10240]
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    frame = jpeg_frame(image)
    if _stored_as_is(frame):
        assert frame is not None
        ds.Rows = frame.rows
        ds.Columns = frame.columns
        if frame.components == 3:
            ds.SamplesPerPixel = 3
            ds.PlanarConfiguration = 0
            # PS3.5 8.2.1: YBR_FULL_422 when the chroma is subsampled, else YBR_FULL; an
            # Adobe JPEG with transform 1 is YCbCr as well.
            ds.PhotometricInterpretation = "YBR_FULL_422" if frame.subsampled else "YBR_FULL"
        else:
            ds.PhotometricInterpretation = "MONOCHROME2"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = encapsulate([image])
        ds["PixelData"].VR = "OB"
        return ds, JPEGBaseline8Bit
    picture = _decoded(image)
    ds.Rows = picture.height
    ds.Columns = picture.width
    if picture.mode == "L":
        ds.PhotometricInterpretation = "MONOCHROME2"
    else:
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = "RGB"
    if frame is not None:  # a JPEG we could not keep as it was: it stays lossy
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.LossyImageCompression = "00"
    pixels = picture.tobytes()
    ds.PixelData = pixels if len(pixels) % 2 == 0 else pixels + b"\x00"
    ds["PixelData"].VR = "OB"
    return ds, ExplicitVRLittleEndian


def _decoded(image: bytes) -> Image.Image:
    """The picture as 8-bit L or RGB, upright (EXIF orientation applied)."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise UnreadableImage(
                    f"the image has {opened.width} x {opened.height} pixels (limit {MAX_PIXELS})"
                )
            opened.load()
            picture = ImageOps.exif_transpose(opened) or opened
    except UnreadableImage:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise UnreadableImage(f"the image cannot be decoded: {exc}") from exc
    if picture.mode in ("1", "L", "I;16", "I", "F") and "transparency" not in picture.info:
        return picture.convert("L") if picture.mode != "L" else picture
    if picture.mode in ("RGBA", "LA", "PA", "P") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return picture.convert("RGB")
