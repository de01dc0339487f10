"""Frames that cannot go out as stored: decoded and re-encoded one at a time through the
codec stack (tessera/storage/transcode.py), and frames as pixel arrays for rendering.
What cannot be produced raises transcode.TranscodeError (answered with 406).

Frames with stored offsets are read by seeking; objects whose frames have no offsets
(deflated, bit-packed single-bit data) are read whole with pydicom, one object at a time.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import orjson
import pydicom
from pydicom.pixels import pixel_array

from tessera.index.retrieve import RetrievedInstance
from tessera.storage.blobstore import BlobStore
from tessera.storage.pixels import PixelDescription
from tessera.storage.transcode import (
    TranscodeError,
    decode_frame,
    decoded_description,
    encode_frame,
    transcode_frame,
)


@lru_cache(maxsize=1024)
def _description(sha256: str, dicom_json: bytes) -> PixelDescription:
    return PixelDescription.from_dicom_json(orjson.loads(dicom_json))


def pixel_description(item: RetrievedInstance) -> PixelDescription:
    if item.dicom_json is None:
        raise TranscodeError("the instance's metadata is missing")
    try:
        return _description(item.sha256, item.dicom_json)
    except ValueError as exc:
        raise TranscodeError(str(exc)) from exc


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
    try:
        with store.open(item.blob_key) as fh:
            # Read whole: a deflated file's Pixel Data has no offset in the stored bytes.
            dataset = pydicom.dcmread(fh)
        return pixel_array(dataset, index=number - 1, raw=True)
    except Exception as exc:  # pydicom's decoders raise many types
        raise TranscodeError(f"cannot decode frame {number}: {exc}") from exc


def decoded_frame(store: BlobStore, item: RetrievedInstance, number: int) -> np.ndarray:
    """Frame `number` as pixels (layout: transcode.decode_frame's)."""
    if item.frames is None:
        return _whole_object_frame(store, item, number)
    return decode_frame(
        stored_frame(store, item, number), item.transfer_syntax_uid, pixel_description(item)
    )


def converted_frame(store: BlobStore, item: RetrievedInstance, number: int, target: str) -> bytes:
    """Frame `number` encoded in the transfer syntax `target`."""
    pixel = pixel_description(item)
    if item.frames is None:
        array = _whole_object_frame(store, item, number)
        return encode_frame(array, decoded_description(pixel, item.transfer_syntax_uid), target)
    frame = stored_frame(store, item, number)
    return transcode_frame(frame, item.transfer_syntax_uid, target, pixel)
