"""Where each frame of Pixel Data lies in a stored file.

A frame is a list of (file offset, length) fragments: one fragment for native pixel data,
one or more for encapsulated (compressed) pixel data. WADO-RS serves a frame by seeking to
these offsets, never by loading the whole Pixel Data.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.uid import UID

Fragment = tuple[int, int]
FrameIndex = list[list[Fragment]]

ITEM_TAG = (0xFFFE, 0xE000)
SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
UNDEFINED_LENGTH = 0xFFFFFFFF

# First bytes of a compressed frame, used when fragments must be grouped into frames with
# no offset table: JPEG SOI, JPEG 2000 codestream SOC, JP2 signature box.
_FRAME_STARTS = (b"\xff\xd8", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP")


class PixelDataError(ValueError):
    """The Pixel Data element is malformed or truncated."""


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise PixelDataError("file ends inside Pixel Data")
    return data


def locate_frames(
    fh: BinaryIO,
    position: int,
    file_size: int,
    dataset: Dataset,
    transfer_syntax: UID,
) -> tuple[FrameIndex | None, str]:
    """Index the frames of the Pixel Data element that starts at `position`.

    Returns (frames, pixel_vr). frames is None when the frames cannot be addressed by
    offset (e.g. bit-packed single-bit frames); they must then be decoded from the whole
    object. Raises PixelDataError for truncated or malformed Pixel Data.
    """
    little = transfer_syntax.is_little_endian
    implicit = transfer_syntax.is_implicit_VR
    fh.seek(position)
    endian = "<" if little else ">"
    head = _read_exact(fh, 8)
    group, element = struct.unpack(endian + "HH", head[:4])
    # Some files say explicit VR but encode Pixel Data implicitly (pydicom tolerates it too):
    # trust the bytes, not the transfer syntax.
    if not implicit and head[4:6].isalpha() and head[4:6].isupper():
        vr = head[4:6].decode("ascii")
        length = struct.unpack(endian + "L", _read_exact(fh, 4))[0]
    else:
        length = struct.unpack(endian + "L", head[4:8])[0]
        vr = "OW" if int(dataset.get("BitsAllocated", 8) or 8) > 8 else "OB"
    if (group, element) != (0x7FE0, 0x0010):
        raise PixelDataError("Pixel Data element not found where expected")
    data_start = fh.tell()
    frame_count = _number_of_frames(dataset)

    if length != UNDEFINED_LENGTH:
        if data_start + length > file_size:
            raise PixelDataError("Pixel Data is longer than the file (truncated)")
        return _native_frames(dataset, data_start, length, frame_count), vr

    fragments, basic_offsets = _read_fragments(fh, file_size)
    return _group_fragments(fh, dataset, fragments, basic_offsets, frame_count), vr


def _number_of_frames(dataset: Dataset) -> int:
    try:
        value = int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        value = 1
    return max(value, 1)


def _native_frames(
    dataset: Dataset, start: int, length: int, frame_count: int
) -> FrameIndex | None:
    try:
        rows = int(dataset.Rows)
        columns = int(dataset.Columns)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        bits = int(dataset.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    if str(dataset.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        samples = (
            2  # native YBR_FULL_422 stores two chroma samples per two pixels (PS3.3 C.7.6.3.1.2)
        )
    frame_bits = rows * columns * samples * bits
    if frame_bits == 0 or frame_bits % 8:
        return None  # bit-packed frames do not start on byte boundaries
    frame_bytes = frame_bits // 8
    if frame_bytes * frame_count > length:
        frame_count = length // frame_bytes
    return [[(start + i * frame_bytes, frame_bytes)] for i in range(frame_count)]


def _read_fragments(fh: BinaryIO, file_size: int) -> tuple[list[Fragment], list[int]]:
    """Read the Basic Offset Table and the fragment items up to the sequence delimiter."""
    fragments: list[Fragment] = []
    basic_offsets: list[int] = []
    first = True
    while True:
        header = fh.read(8)
        if len(header) < 8:
            raise PixelDataError("encapsulated Pixel Data has no sequence delimiter (truncated)")
        group, element, length = struct.unpack("<HHL", header)
        if (group, element) == SEQUENCE_DELIMITER:
            break
        if (group, element) != ITEM_TAG or length == UNDEFINED_LENGTH:
            raise PixelDataError("malformed item in encapsulated Pixel Data")
        offset = fh.tell()
        if offset + length > file_size:
            raise PixelDataError("fragment runs past the end of the file (truncated)")
        if first:
            table = _read_exact(fh, length)
            basic_offsets = list(struct.unpack(f"<{length // 4}L", table[: length // 4 * 4]))
            first = False
            continue
        fragments.append((offset, length))
        fh.seek(length, 1)
    return fragments, basic_offsets


def _group_fragments(
    fh: BinaryIO,
    dataset: Dataset,
    fragments: list[Fragment],
    basic_offsets: list[int],
    frame_count: int,
) -> FrameIndex | None:
    if not fragments:
        return []
    if frame_count == 1:
        return [fragments]
    # Offsets in the (Extended) Basic Offset Table count from the first fragment's item tag.
    origin = fragments[0][0] - 8
    starts = basic_offsets if len(basic_offsets) == frame_count else None
    if starts is None and "ExtendedOffsetTable" in dataset:
        raw = dataset.ExtendedOffsetTable
        table = list(struct.unpack(f"<{len(raw) // 8}Q", raw))
        if len(table) == frame_count:
            starts = table
    if starts is not None:
        by_item_start = {offset - 8 - origin: index for index, (offset, _) in enumerate(fragments)}
        if all(start in by_item_start for start in starts):
            bounds = [by_item_start[s] for s in starts] + [len(fragments)]
            return [fragments[bounds[i] : bounds[i + 1]] for i in range(frame_count)]
    if len(fragments) == frame_count:
        return [[fragment] for fragment in fragments]
    # No usable table: a new frame starts at each fragment that begins with a frame marker.
    frames: FrameIndex = []
    for offset, length in fragments:
        fh.seek(offset)
        head = fh.read(12)
        if not frames or any(head.startswith(marker) for marker in _FRAME_STARTS):
            frames.append([(offset, length)])
        else:
            frames[-1].append((offset, length))
    return frames if len(frames) == frame_count else None
