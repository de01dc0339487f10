"""Frames that cannot go out as stored: decoded and re-encoded one at a time through the
codec stack (tessera/storage/transcode.py), and frames as pixel arrays for rendering.

Frames with stored offsets are read by seeking; objects whose frames have no offsets
(deflated, bit-packed single-bit data) are read whole with pydicom, one object at a time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import orjson

from tessera.index.retrieve import RetrievedInstance
from tessera.storage.blobstore import BlobStore

if TYPE_CHECKING:
    import numpy as np

    from tessera.storage.pixels import PixelDescription


class FrameConversionError(Exception):
    """The frame cannot be produced in the requested transfer syntax (406)."""


@lru_cache(maxsize=1024)
def _description(sha256: str, dicom_json: bytes) -> PixelDescription:
    from tessera.storage.pixels import PixelDescription

    return PixelDescription.from_dicom_json(orjson.loads(dicom_json))


def pixel_description(item: RetrievedInstance) -> PixelDescription:
    if item.dicom_json is None:
        raise FrameConversionError("the instance's metadata is missing")
    try:
        return _description(item.sha256, item.dicom_json)
    except ValueError as exc:
        raise FrameConversionError(str(exc)) from exc


def stored_frame(store: BlobStore, item: RetrievedInstance, number: int) -> bytes:
    """Frame `number` (1-based) byte for byte as stored, read at its offsets."""
    if item.frames is None:
        raise ValueError("the instance was resolved without its frame table")
    fragments = item.frames[number - 1]
    if len(fragments) == 1:
        offset, length = fragments[0]
        return store.read_range(item.blob_key, offset, length)
    return b"".join(store.read_range(item.blob_key, o, n) for o, n in fragments)


def _whole_object_frame(store: BlobStore, item: RetrievedInstance, number: int) -> np.ndarray:
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        with store.open(item.blob_key) as fh:
            # Read whole: a deflated file's Pixel Data has no offset in the stored bytes.
            dataset = pydicom.dcmread(fh)
        return pixel_array(dataset, index=number - 1, raw=True)
    except Exception as exc:  # pydicom's decoders raise many types
        raise FrameConversionError(f"cannot decode frame {number}: {exc}") from exc


def decoded_frame(store: BlobStore, item: RetrievedInstance, number: int) -> np.ndarray:
    """Frame `number` as pixels (layout: transcode.decode_frame's)."""
    from tessera.storage.transcode import TranscodeError, decode_frame

    if item.frames is None:
        return _whole_object_frame(store, item, number)
    try:
        return decode_frame(
            stored_frame(store, item, number), item.transfer_syntax_uid, pixel_description(item)
        )
    except TranscodeError as exc:
        raise FrameConversionError(str(exc)) from exc


def converted_frame(store: BlobStore, item: RetrievedInstance, number: int, target: str) -> bytes:
    """Frame `number` encoded in the transfer syntax `target`."""
    from tessera.storage.transcode import (
        TranscodeError,
        decoded_description,
        encode_frame,
        transcode_frame,
    )

    pixel = pixel_description(item)
    try:
        if item.frames is None:
            array = _whole_object_frame(store, item, number)
            return encode_frame(array, decoded_description(pixel, item.transfer_syntax_uid), target)
        frame = stored_frame(store, item, number)
        return transcode_frame(frame, item.transfer_syntax_uid, target, pixel)
    except TranscodeError as exc:
        raise FrameConversionError(str(exc)) from exc
