"""The bridge from WADO to the codec stack (tessera/storage/transcode.py): what can be
converted, and converting whole instances. Frames and rendering call the codecs directly."""

from __future__ import annotations

from functools import lru_cache

from tessera.dicomweb.negotiation import needs_conversion


@lru_cache(maxsize=256)
def can_convert(stored: str, target: str) -> bool:
    """Whether a whole object stored in `stored` can be sent in `target`."""
    if stored == target:
        return True
    try:
        from tessera.storage import transcode
    except ImportError:  # the codec stack is not installed in this tree
        return False
    return bool(transcode.can_decode(stored) and transcode.can_encode(target))


@lru_cache(maxsize=256)
def can_convert_frames(stored: str, target: str) -> bool:
    """Whether frames stored in `stored` can be sent one by one in `target`."""
    if not needs_conversion(stored, target):
        return True
    try:
        from tessera.storage import transcode
    except ImportError:
        return False
    return bool(transcode.can_decode(stored) and transcode.can_encode_frames(target))
