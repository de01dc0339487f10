"""Is a Part 10 file complete? pydicom parses a cut-off file silently, so ingest walks the
element structure (tags and lengths only, values are skipped) and refuses a file whose
elements, items or sequences run past its end.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_ITEM_END = (0xFFFE, 0xE00D)
_SEQUENCE_END = (0xFFFE, 0xE0DD)
_MAX_DEPTH = 48


class Incomplete(ValueError):
    """The file ends before its last element, item or sequence does."""


class _Walker:
    def __init__(self, fh: BinaryIO, size: int, little: bool) -> None:
        self.fh = fh
        self.size = size
        self.endian = "<" if little else ">"

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise Incomplete("file ends inside an element header")
        return data

    def skip(self, n: int) -> None:
        position = self.fh.tell() + n
        if position > self.size:
            raise Incomplete("an element's value runs past the end of the file")
        self.fh.seek(position)

    def element_header(self, explicit: bool) -> tuple[tuple[int, int], bytes | None, int]:
        head = self.read(8)
        group, element = struct.unpack(self.endian + "HH", head[:4])
        tag = (group, element)
        if group == 0xFFFE:  # items and delimiters have no VR in any syntax
            return tag, None, struct.unpack(self.endian + "L", head[4:])[0]
        vr = head[4:6]
        if explicit and vr.isalpha() and vr.isupper():
            if vr in _LONG_VRS:
                return tag, vr, struct.unpack(self.endian + "L", self.read(4))[0]
            return tag, vr, struct.unpack(self.endian + "H", head[6:])[0]
        # Implicit VR (also tolerated where an explicit file slips into implicit encoding).
        return tag, None, struct.unpack(self.endian + "L", head[4:])[0]

    def elements(self, explicit: bool, depth: int, until_item_end: bool) -> None:
        """Walk elements to the end of the file, or to an item delimiter."""
        if depth > _MAX_DEPTH:
            raise Incomplete("sequences nested too deeply")
        while True:
            if not until_item_end and self.fh.tell() >= self.size:
                return
            tag, vr, length = self.element_header(explicit)
            if tag == _ITEM_END:
                if until_item_end:
                    return
                continue  # stray delimiter at top level: tolerated, as pydicom does
            if length == _UNDEFINED:
                # SQ, or UN / Pixel Data with undefined length; UN content is implicit VR.
                self.sequence(explicit and vr != b"UN", depth + 1)
            else:
                self.skip(length)

    def sequence(self, explicit: bool, depth: int) -> None:
        while True:
            tag, _vr, length = self.element_header(explicit)
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM:
                raise Incomplete("malformed sequence (expected an item)")
            if length == _UNDEFINED:
                self.elements(explicit, depth, until_item_end=True)
            else:
                self.skip(length)


def dataset_start(fh: BinaryIO) -> int:
    """Offset of the data set: after the preamble, 'DICM' and the group 0002 elements
    (always explicit VR little endian)."""
    fh.seek(132)
    walker = _Walker(fh, 1 << 62, little=True)
    while True:
        position = fh.tell()
        head = fh.read(4)
        if len(head) < 4 or struct.unpack("<H", head[:2])[0] != 0x0002:
            return position
        fh.seek(position)
        _tag, _vr, length = walker.element_header(explicit=True)
        fh.seek(length, 1)


def check_complete(fh: BinaryIO, file_size: int, transfer_syntax: UID) -> None:
    """Raise Incomplete if the file's data set is cut off.

    Deflated data sets are checked by inflating them elsewhere.
    """
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        return
    start = dataset_start(fh)
    fh.seek(start)
    walker = _Walker(fh, file_size, transfer_syntax.is_little_endian)
    walker.elements(not transfer_syntax.is_implicit_VR, 0, until_item_end=False)
