"""Frames that cannot go out as stored: decoded and re-encoded through the codec stack
(tessera/storage/transcode.py), one frame at a time."""

from __future__ import annotations

from tessera.index.retrieve import RetrievedInstance
from tessera.storage.blobstore import BlobStore


class FrameConversionError(Exception):
    """The frame cannot be produced in the requested transfer syntax (406)."""


def converted_frame(store: BlobStore, item: RetrievedInstance, number: int, target: str) -> bytes:
    raise FrameConversionError(
        f"cannot convert frames from {item.transfer_syntax_uid} to {target} yet"
    )
