"""Are two Part 10 files the same object? Decided on the data set, not the file's bytes.

A resend of a stored instance (a modality sending again, a PACS forwarding what it received
by STOW-RS over DIMSE) is re-encoded by its sender: other File Meta Information, implicit
instead of explicit VR, another transfer syntax. It is still the same object. The data set is
compared without the File Meta Information and without trailing padding, each element by its
value as Implicit VR Little Endian encodes it (tag, length, value: no VR, so explicit and
implicit VR encodings compare equal). Pixel Data is compared as stored when both files use
the same transfer syntax and, when they differ and both are lossless, after decoding (the
attributes a lossless transcoding may change, Photometric Interpretation and Planar
Configuration, are then left to the decoded pixels).

Reads both files whole: used only when a SOP Instance UID arrives again with other bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag
from pydicom.uid import UID

from tessera.storage import syntaxes

_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_TRAILING_PADDING = Tag(0xFFFC, 0xFFFC)
# Changed by a lossless transcoding without changing the decoded pixels.
_TRANSCODING_CHANGES = frozenset({Tag(0x0028, 0x0004), Tag(0x0028, 0x0006)})


def same_content(stored: str | Path | BinaryIO, received: str | Path | BinaryIO) -> bool:
    """True when both files hold the same data set (see the module docstring)."""
    first = pydicom.dcmread(stored)
    second = pydicom.dcmread(received)
    first_syntax = _syntax(first)
    second_syntax = _syntax(second)
    transcoded = not _same_pixel_encoding(first_syntax, second_syntax)
    ignored = {_PIXEL_DATA, _TRAILING_PADDING}
    if transcoded:
        ignored |= _TRANSCODING_CHANGES
    if _canonical(first, ignored) != _canonical(second, ignored):
        return False
    if (_PIXEL_DATA in first) != (_PIXEL_DATA in second):
        return False
    if _PIXEL_DATA not in first:
        return True
    if not transcoded:
        return bytes(first.PixelData) == bytes(second.PixelData)
    if not (_lossless(first_syntax) and _lossless(second_syntax)):
        return False
    try:
        return np.array_equal(first.pixel_array, second.pixel_array)
    except Exception:  # a syntax we cannot decode: we cannot show the pixels are the same
        return False


def _syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.get("TransferSyntaxUID", "")).strip().rstrip("\x00"))


def _same_pixel_encoding(first: UID, second: UID) -> bool:
    """Are the stored Pixel Data bytes comparable as they are?"""
    if first == second:
        return True
    return first in syntaxes.NATIVE_LITTLE_ENDIAN and second in syntaxes.NATIVE_LITTLE_ENDIAN


def _lossless(uid: UID) -> bool:
    return uid in syntaxes.NATIVE or (
        syntaxes.is_encapsulated(uid) and uid not in syntaxes.ALLOWS_LOSSY
    )


def _canonical(ds: Dataset, ignored: set) -> bytes:
    """The data set's elements, minus `ignored`, as Implicit VR Little Endian bytes."""
    kept = Dataset()
    for element in ds:
        if element.tag not in ignored and element.tag.group != 0x0002:
            kept.add(element)
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = True
    kept.set_original_encoding(ds.is_implicit_VR, ds.is_little_endian, ds.original_character_set)
    write_dataset(out, kept)
    return out.getvalue()
