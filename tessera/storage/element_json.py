"""Each top-level element's DICOM JSON, remembered by its encoding.

The instances of a series repeat most of their header byte for byte (patient, study,
equipment, image geometry). pydicom spends 10-18 µs converting each element and writing its
JSON, so the ingest of a series re-derives the same answers over and over. An element whose
raw encoding was converted before (same tag, VR, byte order, value bytes and character set)
converts the same way again: its JSON is taken from here, and it is known to be readable
(storage/parse.py's check that every element decodes), without converting it once more.

Only what converts the same whatever the rest of the data set holds is remembered: short
values of a stated (or unambiguous) VR, no sequences, no private or UN elements.
"""

from __future__ import annotations

import threading
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

# Longer values are rarely repeated (and a BulkDataURI names its instance).
MAX_VALUE_BYTES = 256
MAX_ENTRIES = 50_000
_SPECIFIC_CHARACTER_SET = 0x00080005

Key = tuple[int, str, bool, bytes, bytes]

_known: dict[Key, dict[str, Any]] = {}
_lock = threading.Lock()


def character_set(dataset: Dataset) -> bytes:
    """The data set's Specific Character Set as it decides text decoding (part of each key)."""
    element = dataset.get_item(_SPECIFIC_CHARACTER_SET)
    if element is None:
        return b""
    value = element.value
    if isinstance(value, bytes):
        return value
    return repr(value).encode()


def key_of(dataset: Dataset, tag: int, charset: bytes) -> Key | None:
    """The key of a top-level element still in its raw form, or None when its conversion may
    depend on more than its own bytes (or it was converted already)."""
    raw = dataset.get_item(tag)
    if not isinstance(raw, RawDataElement):
        return None
    value = raw.value
    if not isinstance(value, bytes) or len(value) > MAX_VALUE_BYTES:
        return None
    if tag & 0x10000 or tag == _SPECIFIC_CHARACTER_SET:  # private group
        return None
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    if vr in ("SQ", "UN") or " or " in vr:
        return None
    return (int(tag), vr, bool(raw.is_little_endian), value, charset)


def known(key: Key) -> dict[str, Any] | None:
    return _known.get(key)


def remember(key: Key, element_json: dict[str, Any]) -> None:
    with _lock:
        if len(_known) >= MAX_ENTRIES:
            _known.clear()
        _known[key] = element_json


def forget() -> None:
    """Drop everything remembered (for tests, or after changing pydicom's configuration)."""
    with _lock:
        _known.clear()
