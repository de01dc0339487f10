"""Was an image lossy compressed? (PS3.3 C.7.6.1.1.5: once "01", always "01".)

Answered from the dataset's Lossy Image Compression (0028,2110) when it says "01", from
the transfer syntax when it is lossy by definition (JPEG baseline/extended), and from the
codestream when the syntax allows both (JPEG 2000 / HTJ2K part 1: irreversible 9-7
wavelet; JPEG-LS near-lossless: NEAR > 0). When in doubt, lossy.
"""

from __future__ import annotations

import struct

from pydicom.uid import UID

from tessera.storage import syntaxes


def _j2k_irreversible(frame: bytes) -> bool | None:
    """True for a 9-7 (irreversible) wavelet, False for 5-3, None if no COD marker found."""
    start = frame.find(b"\xff\x4f\xff\x51")
    if start < 0:
        return None
    position = start + 2
    while position + 4 <= len(frame):
        marker, length = struct.unpack(">HH", frame[position : position + 4])
        if marker == 0xFF52:  # COD: Scod, SGcod(4), then SPcod: levels, cbw, cbh, style, wavelet
            wavelet_at = position + 4 + 1 + 4 + 4
            if wavelet_at >= len(frame):
                return None
            return frame[wavelet_at] == 0
        if marker in (0xFF90, 0xFF93) or marker < 0xFF00:
            return None
        position += 2 + length
    return None


def _jpeg_ls_near(frame: bytes) -> int | None:
    """The NEAR parameter of the first JPEG-LS scan, None if not found."""
    if not frame.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 4 <= len(frame):
        marker, length = struct.unpack(">HH", frame[position : position + 4])
        if marker == 0xFFDA:  # SOS: Ns, Ns x (Ci, Tmi), NEAR
            components = frame[position + 4]
            near_at = position + 5 + 2 * components
            return frame[near_at] if near_at < len(frame) else None
        if marker < 0xFF00:
            return None
        position += 2 + length
    return None


def frame_is_lossy(frame: bytes, transfer_syntax_uid: str) -> bool:
    """Whether this stored frame's encoding lost information (when unsure: True)."""
    uid = UID(transfer_syntax_uid)
    if uid in syntaxes.ALWAYS_LOSSY:
        return True
    if uid in (syntaxes.JPEG_2000, syntaxes.HTJ2K, "1.2.840.10008.1.2.4.93"):
        irreversible = _j2k_irreversible(frame)
        # A reversible 5-3 wavelet is taken as lossless (a rate-truncated reversible stream
        # is possible but rare, and a dataset saying "01" still wins); unknown is lossy.
        return irreversible is not False
    if uid == syntaxes.JPEG_LS_NEAR_LOSSLESS:
        near = _jpeg_ls_near(frame)
        return near is None or near > 0
    return False


def dataset_says_lossy(value: object) -> bool:
    """Lossy Image Compression (0028,2110) value is "01"."""
    return str(value or "").strip() == "01"


def is_lossy(
    lossy_image_compression: object, transfer_syntax_uid: str, first_frame: bytes | None
) -> bool:
    """Whether an instance is lossy: the dataset's attribute, else its syntax and first frame."""
    if dataset_says_lossy(lossy_image_compression):
        return True
    if (
        str(lossy_image_compression or "").strip() == "00"
        and UID(transfer_syntax_uid) not in syntaxes.ALWAYS_LOSSY
    ):
        return False
    uid = UID(transfer_syntax_uid)
    if uid in syntaxes.ALWAYS_LOSSY:
        return True
    if uid in syntaxes.MAYBE_LOSSY:
        return True if first_frame is None else frame_is_lossy(first_frame, uid)
    return False
