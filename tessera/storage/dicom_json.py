"""The instance's DICOM JSON metadata (PS3.18 Annex F), built once at ingest.

Large binary values become BulkDataURIs. They are stored relative to the tenant's DICOMweb
root (``studies/{s}/series/{se}/instances/{i}/bulkdata/{tag}``); the retrieve layer prefixes
the request's own root, so URIs always point at the host and path the client used.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

BULK_DATA_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Binary values up to this size stay inline (small LUTs, private blobs); larger ones are
# served through their BulkDataURI.
BULK_DATA_THRESHOLD = 16 * 1024
_INLINE_ALL = 1 << 62
PIXEL_DATA_TAG = "7FE00010"


def instance_path(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"


def bulk_data_uri(study_uid: str, series_uid: str, sop_uid: str, tag: str) -> str:
    return f"{instance_path(study_uid, series_uid, sop_uid)}/bulkdata/{tag}"


def build_metadata(
    dataset: Dataset,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    pixel_data_vr: str | None,
) -> bytes:
    """DICOM JSON for one instance (a JSON object keyed by tag), as UTF-8 bytes.

    `dataset` is the header read without Pixel Data; when the stored object has Pixel Data
    its VR is given so the metadata can carry its BulkDataURI.
    """
    out: dict[str, Any] = {}
    for element in dataset:
        tag = f"{int(element.tag):08X}"
        try:
            if element.VR in BULK_DATA_VRS and _value_length(element.value) > BULK_DATA_THRESHOLD:
                out[tag] = {
                    "vr": element.VR,
                    "BulkDataURI": bulk_data_uri(study_uid, series_uid, sop_uid, tag),
                }
            else:
                out[tag] = element.to_json_dict(None, _INLINE_ALL)
        except Exception as exc:  # a malformed value must not lose the instance
            log.warning(
                "element left out of metadata",
                extra={"tag": tag, "sop_instance_uid": sop_uid, "reason": str(exc)},
            )
    if pixel_data_vr is not None:
        out[PIXEL_DATA_TAG] = {
            "vr": pixel_data_vr,
            "BulkDataURI": bulk_data_uri(study_uid, series_uid, sop_uid, PIXEL_DATA_TAG),
        }
    return orjson.dumps(out, option=orjson.OPT_SORT_KEYS)


def _value_length(value: object) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    return 0
