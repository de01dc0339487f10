"""The instance's DICOM JSON metadata (PS3.18 Annex F), built once at ingest.

Large binary values become BulkDataURIs. They are stored relative to the tenant's DICOMweb
root (``studies/{s}/series/{se}/instances/{i}/bulkdata/{tag}``); the retrieve layer prefixes
the request's own root, so URIs always point at the host and path the client used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from pydicom.dataset import Dataset

from tessera.storage import element_json
from tessera.storage.parse import ParsedInstance

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


def instance_metadata(parsed: ParsedInstance) -> bytes:
    """DICOM JSON of an instance parsed at ingest (with its elements' encodings)."""
    return build_metadata(
        parsed.dataset,
        parsed.study_instance_uid,
        parsed.series_instance_uid,
        parsed.sop_instance_uid,
        parsed.pixel_data_vr,
        parsed.element_keys,
    )


def build_metadata(
    dataset: Dataset,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    pixel_data_vr: str | None,
    element_keys: Mapping[int, element_json.Key] | None = None,
) -> bytes:
    """DICOM JSON for one instance (a JSON object keyed by tag), as UTF-8 bytes.

    `dataset` is the header read without Pixel Data; when the stored object has Pixel Data
    its VR is given so the metadata can carry its BulkDataURI. `element_keys` are the
    top-level elements' encodings taken before they were converted (ParsedInstance's);
    without them, those still raw are keyed here.
    """
    out: dict[str, Any] = {}
    charset = element_json.character_set(dataset) if element_keys is None else b""
    for number in list(dataset.keys()):
        tag = f"{int(number):08X}"
        if element_keys is not None:
            key = element_keys.get(number)
        else:
            key = element_json.key_of(dataset, number, charset)
        if key is not None:
            seen = element_json.known(key)
            if seen is not None:
                out[tag] = seen
                continue
        try:
            element = dataset[number]
            if element.VR in BULK_DATA_VRS and _value_length(element.value) > BULK_DATA_THRESHOLD:
                out[tag] = {
                    "vr": element.VR,
                    "BulkDataURI": bulk_data_uri(study_uid, series_uid, sop_uid, tag),
                }
            else:
                out[tag] = element.to_json_dict(None, _INLINE_ALL)
                if key is not None:
                    element_json.remember(key, out[tag])
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
