"""A whole instance converted to a file frame by frame: memory holds the header and one
frame, whatever the instance's size.

``write_instance(source, target_ts, out, adjust)`` writes to ``out`` what
``transcode.transcode_instance`` returns (with ``adjust`` applied to the data set, e.g. the
study's coerced attributes), and for the common case streams it:

- the header is read up to Pixel Data (``stop_before_pixels``), changed as
  ``transcode_instance`` changes it, and written in the target syntax;
- the same syntax (only ``adjust`` changes anything): the Pixel Data element is copied as
  stored, in 1 MiB pieces;
- explicit <-> implicit VR little endian: the element gets a header in the target's
  encoding and its value is copied as stored;
- anything else: each frame is read at its stored offsets (storage/frames.py), decoded and
  encoded alone; an encapsulated target gets a Basic Offset Table filled in at the end.

What cannot be streamed goes through ``transcode_instance`` (the instance in memory, as
before): a deflated or big endian source or target, frames without byte offsets
(bit-packed 1-bit data, fragments that cannot be grouped), an instance without Pixel
Data, or elements after Pixel Data.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from tessera.storage import frames as frame_index
from tessera.storage import syntaxes
from tessera.storage.pixels import PixelDescription
from tessera.storage.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, can_decode, can_encode
from tessera.storage.transcode import (
    TranscodeError,
    decode_frame,
    decoded_description,
    describe_encoded,
    encode_frame,
    encoded_description,
    mark_lossy,
    transcode_instance,
)

Adjust = Callable[[Dataset], object]
COPY_CHUNK = 1024 * 1024
_STREAMABLE_NATIVE = frozenset(
    {syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, syntaxes.IMPLICIT_VR_LITTLE_ENDIAN}
)
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_DATA = b"\xe0\x7f\x10\x00"


def write_instance(
    source: BinaryIO, target_transfer_syntax_uid: str, out: BinaryIO, adjust: Adjust | None = None
) -> None:
    """Write ``source`` (a seekable Part 10 file) to ``out`` in the target syntax, with
    ``adjust`` applied to its data set; streamed frame by frame when it can be."""
    target = UID(str(target_transfer_syntax_uid).strip().rstrip("\x00"))
    if not can_encode(target):
        raise TranscodeError(f"cannot produce transfer syntax {target}")
    if not _stream(source, target, out, adjust):
        source.seek(0)
        data = transcode_instance(source, target)
        if adjust is not None:
            data = _adjusted(data, adjust)
        out.write(data)


def _adjusted(data: bytes, adjust: Adjust) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    adjust(ds)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _read_header(source: BinaryIO) -> tuple[Dataset, int, int]:
    try:
        source.seek(0)
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        position = source.tell()
        size = source.seek(0, io.SEEK_END)
    except Exception as exc:
        raise TranscodeError(f"cannot read the DICOM file: {exc}") from exc
    return ds, position, size


def _stream(source: BinaryIO, target: UID, out: BinaryIO, adjust: Adjust | None) -> bool:
    ds, position, size = _read_header(source)
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        return False
    source_ts = UID(str(meta.TransferSyntaxUID).strip().rstrip("\x00"))
    if source_ts == target and adjust is None:
        _copy(source, 0, size, out)  # nothing to change: the file as it is
        return True
    if not (source_ts in _STREAMABLE_NATIVE or source_ts.is_encapsulated):
        return False
    if not (target in _STREAMABLE_NATIVE or target.is_encapsulated):
        return False
    if position >= size:
        return False  # no Pixel Data: small, the whole-instance path is exact
    source.seek(position)
    if source.read(4) != _PIXEL_DATA:
        return False
    try:
        located, _vr = frame_index.locate_frames(source, position, size, ds, source_ts)
    except frame_index.PixelDataError as exc:
        raise TranscodeError(f"cannot read the Pixel Data: {exc}") from exc
    if not located or _pixel_data_end(source, position, located, source_ts) != size:
        return False
    if adjust is not None:
        adjust(ds)
    if source_ts == target:
        _write_header(ds, target, out)
        _copy(source, position, size, out)
        return True
    if not can_decode(source_ts):
        raise TranscodeError(f"cannot decode transfer syntax {source_ts}")
    if source_ts in _STREAMABLE_NATIVE and target in _STREAMABLE_NATIVE:
        _write_header(ds, target, out)
        start = located[0][0][0]
        length = _native_value_length(source, position, source_ts)
        out.write(_element_header(target, _native_vr(ds), length))
        _copy(source, start, start + length, out)
        return True
    _convert_frames(source, ds, source_ts, target, located, out)
    return True


def _pixel_data_end(
    source: BinaryIO, position: int, located: frame_index.FrameIndex, source_ts: UID
) -> int:
    if source_ts.is_encapsulated:
        offset, length = located[-1][-1]
        end = offset + length
        source.seek(end)
        return end + 8 if source.read(8) == _SEQUENCE_DELIMITER else -1
    start = located[0][0][0]
    return start + _native_value_length(source, position, source_ts)


def _native_value_length(source: BinaryIO, position: int, source_ts: UID) -> int:
    source.seek(position + 4)
    head = source.read(8)
    if not source_ts.is_implicit_VR and head[:2].isalpha():
        return int(struct.unpack("<L", head[4:8])[0])
    return int(struct.unpack("<L", head[:4])[0])


def _native_vr(ds: Dataset) -> str:
    return "OW" if int(ds.get("BitsAllocated", 8) or 8) > 8 else "OB"


def _write_header(ds: Dataset, target: UID, out: BinaryIO) -> None:
    ds.file_meta.TransferSyntaxUID = target
    try:
        pydicom.dcmwrite(
            out,
            ds,
            implicit_vr=target.is_implicit_VR,
            little_endian=True,
            enforce_file_format=True,
        )
    except Exception as exc:
        raise TranscodeError(f"cannot write the dataset as {target.name}: {exc}") from exc


def _element_header(target: UID, vr: str, length: int) -> bytes:
    if target.is_implicit_VR:
        return _PIXEL_DATA + struct.pack("<L", length)
    return _PIXEL_DATA + vr.encode() + b"\x00\x00" + struct.pack("<L", length)


def _copy(source: BinaryIO, start: int, end: int, out: BinaryIO) -> None:
    source.seek(start)
    remaining = end - start
    while remaining > 0:
        chunk = source.read(min(COPY_CHUNK, remaining))
        if not chunk:
            raise TranscodeError("the stored file is shorter than its Pixel Data")
        out.write(chunk)
        remaining -= len(chunk)


def _read_frame(source: BinaryIO, fragments: list[frame_index.Fragment]) -> bytes:
    parts = []
    for offset, length in fragments:
        source.seek(offset)
        part = source.read(length)
        if len(part) != length:
            raise TranscodeError("the stored file is shorter than its Pixel Data")
        parts.append(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _convert_frames(
    source: BinaryIO,
    ds: Dataset,
    source_ts: UID,
    target: UID,
    located: frame_index.FrameIndex,
    out: BinaryIO,
) -> None:
    try:
        pixel = PixelDescription.from_dataset(ds)
    except ValueError as exc:
        raise TranscodeError(str(exc)) from exc
    if len(located) != pixel.number_of_frames:
        raise TranscodeError(
            f"Pixel Data holds {len(located)} frames, Number of Frames says "
            f"{pixel.number_of_frames}"
        )
    first = _read_frame(source, located[0]) if source_ts.is_encapsulated else None
    lengths = [sum(length for _, length in fragments) for fragments in located]
    mark_lossy(ds, source_ts, pixel, first, lengths)
    decoded = decoded_description(pixel, source_ts)
    frame_target = target if target.is_encapsulated else EXPLICIT_VR_LITTLE_ENDIAN
    encoded = encoded_description(decoded, frame_target)
    describe_encoded(ds, encoded)
    _write_header(ds, target, out)

    def frames() -> Iterator[bytes]:
        for fragments in located:
            array = decode_frame(_read_frame(source, fragments), source_ts, pixel)
            yield encode_frame(array, decoded, frame_target)

    if target.is_encapsulated:
        _write_encapsulated(frames(), len(located), target, out)
    else:
        _write_native(frames(), len(located), encoded, target, out)


def _write_encapsulated(frames: Iterable[bytes], count: int, target: UID, out: BinaryIO) -> None:
    """Undefined-length OB with a Basic Offset Table (filled in once the frames are
    written) and one fragment per frame, as pydicom's encapsulate(has_bot=True) makes."""
    out.write(_element_header(target, "OB", 0xFFFFFFFF))
    out.write(_ITEM + struct.pack("<L", 4 * count))
    table_at = out.tell()
    out.write(b"\x00" * (4 * count))
    offsets = []
    offset = 0
    for frame in frames:
        if len(frame) % 2:
            frame += b"\x00"
        offsets.append(offset)
        out.write(_ITEM + struct.pack("<L", len(frame)))
        out.write(frame)
        offset += 8 + len(frame)
    out.write(_SEQUENCE_DELIMITER)
    if offsets and offsets[-1] > 0xFFFFFFFF:
        raise TranscodeError("the converted Pixel Data is too large for a Basic Offset Table")
    end = out.tell()
    out.seek(table_at)
    out.write(struct.pack(f"<{count}L", *offsets))
    out.seek(end)


def _write_native(
    frames: Iterable[bytes], count: int, encoded: PixelDescription, target: UID, out: BinaryIO
) -> None:
    length = encoded.frame_length * count
    if not encoded.frame_length or length + 1 > 0xFFFFFFFE:
        raise TranscodeError("the converted Pixel Data is too large for one element")
    padded = length + (length % 2)
    out.write(_element_header(target, "OB" if encoded.bits_allocated <= 8 else "OW", padded))
    for frame in frames:
        if len(frame) != encoded.frame_length:
            raise TranscodeError(
                f"a decoded frame has {len(frame)} bytes, expected {encoded.frame_length}"
            )
        out.write(frame)
    if padded != length:
        out.write(b"\x00")
