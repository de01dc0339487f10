"""An instance sent as DICOM JSON metadata plus bulk data (PS3.18 §10.5, "metadata and bulk
data" requests) turned into a dataset that can be written as Part 10.

BulkDataURIs are resolved to the request's bulk data parts by the caller. Pixel Data sent
in a compressed media type (image/jpeg, image/jp2, ...) is one frame, encapsulated in the
transfer syntax the part names (its `transfer-syntax` parameter, else the media type's
usual one); sent as application/octet-stream it is native pixel data.

Attributes the standard lets the origin server fill (PS3.18 §10.5.1.2.2 and the IODs' UID
and Type 2 rules) are filled when missing and reported: Study, Series and SOP Instance UIDs
(new UIDs; instances of one request without a Series Instance UID share one new series),
SOP Class UID of an Encapsulated PDF, Instance Number, Instance Creation Date/Time and
Content Date/Time, Specific Character Set (JSON is Unicode: ISO_IR 192).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian, generate_uid

PIXEL_DATA_TAG = "7FE00010"
OCTET_STREAM = "application/octet-stream"
# The transfer syntax a compressed pixel data part is in when it does not say.
DEFAULT_SYNTAX = {
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "video/mp4": "1.2.840.10008.1.2.4.102",
    "video/mpeg": "1.2.840.10008.1.2.4.100",
}


class InstanceNotUsable(ValueError):
    """The metadata cannot become an instance (bad JSON, a BulkDataURI with no part)."""


@dataclass(frozen=True)
class BulkPart:
    data: bytes
    media_type: str
    transfer_syntax: str | None = None


@dataclass
class RequestDefaults:
    """UIDs shared by the instances of one request that lack them."""

    study_instance_uid: str | None = None
    new_study_uid: str = field(default_factory=lambda: generate_uid(prefix=None))
    new_series_uid: str = field(default_factory=lambda: generate_uid(prefix=None))
    next_instance_number: int = 1


@dataclass
class BuiltInstance:
    dataset: Dataset
    transfer_syntax_uid: str
    filled: list[str]


def _single(element: dict[str, Any]) -> Any:
    values = element.get("Value") or []
    return values[0] if values else None


def build_instance(
    metadata: dict[str, Any],
    bulk_part: Callable[[str], BulkPart | None],
    defaults: RequestDefaults,
) -> BuiltInstance:
    if not isinstance(metadata, dict):
        raise InstanceNotUsable("each metadata item must be a DICOM JSON object")
    syntax: str = ExplicitVRLittleEndian
    pixel_part: BulkPart | None = None
    pixel = metadata.get(PIXEL_DATA_TAG)
    if isinstance(pixel, dict) and "BulkDataURI" in pixel:
        pixel_part = bulk_part(str(pixel["BulkDataURI"]))
        if pixel_part is None:
            raise InstanceNotUsable(f"no bulk data part for Pixel Data ({pixel['BulkDataURI']})")
        if pixel_part.media_type != OCTET_STREAM:
            syntax = pixel_part.transfer_syntax or DEFAULT_SYNTAX.get(pixel_part.media_type, "")
            if not syntax:
                raise InstanceNotUsable(
                    f"Pixel Data sent as {pixel_part.media_type}, which is not a pixel data "
                    "media type"
                )
        metadata = {k: v for k, v in metadata.items() if k != PIXEL_DATA_TAG}

    def handler(tag: str, vr: str, uri: str) -> bytes:
        part = bulk_part(uri)
        if part is None:
            raise InstanceNotUsable(f"no bulk data part for {tag} ({uri})")
        return part.data

    try:
        dataset = Dataset.from_json(metadata, bulk_data_uri_handler=handler)
    except InstanceNotUsable:
        raise
    except Exception as exc:  # pydicom raises many types for malformed JSON values
        raise InstanceNotUsable(f"the DICOM JSON cannot be read: {exc}") from exc
    if pixel_part is not None:
        if syntax == ExplicitVRLittleEndian:
            data = pixel_part.data
            dataset.PixelData = data if len(data) % 2 == 0 else data + b"\x00"
            dataset["PixelData"].VR = "OW" if int(dataset.get("BitsAllocated", 8)) > 8 else "OB"
        else:
            frames = int(dataset.get("NumberOfFrames", 1) or 1)
            if frames > 1 and not syntax.startswith("1.2.840.10008.1.2.4.10"):
                raise InstanceNotUsable(
                    "compressed Pixel Data in a metadata and bulk data request is one frame; "
                    "send multi-frame objects as application/dicom"
                )
            dataset.PixelData = encapsulate([pixel_part.data], has_bot=False)
            dataset["PixelData"].VR = "OB"
    elif isinstance(pixel, dict) and "InlineBinary" in pixel:
        dataset.PixelData = base64.b64decode(pixel["InlineBinary"])
    filled = fill_missing(dataset, defaults)
    return BuiltInstance(dataset, syntax, filled)


def fill_missing(dataset: Dataset, defaults: RequestDefaults) -> list[str]:
    """Fill what the origin server may; the keywords filled, in order."""
    filled: list[str] = []
    now = datetime.now()

    def fill(keyword: str, value: object) -> None:
        if not dataset.get(keyword):
            setattr(dataset, keyword, value)
            filled.append(keyword)

    if "SpecificCharacterSet" not in dataset:
        dataset.SpecificCharacterSet = "ISO_IR 192"
    if not dataset.get("SOPClassUID") and "EncapsulatedDocument" in dataset:
        if str(dataset.get("MIMETypeOfEncapsulatedDocument", "")).lower() == "application/pdf":
            fill("SOPClassUID", EncapsulatedPDFStorage)
    fill("StudyInstanceUID", defaults.study_instance_uid or defaults.new_study_uid)
    fill("SeriesInstanceUID", defaults.new_series_uid)
    fill("SOPInstanceUID", generate_uid(prefix=None))
    if dataset.get("InstanceNumber") in (None, ""):
        dataset.InstanceNumber = defaults.next_instance_number
        defaults.next_instance_number += 1
        filled.append("InstanceNumber")
    fill("InstanceCreationDate", now.strftime("%Y%m%d"))
    fill("InstanceCreationTime", now.strftime("%H%M%S"))
    fill("ContentDate", now.strftime("%Y%m%d"))
    fill("ContentTime", now.strftime("%H%M%S"))
    return filled
