"""Writing multipart/related bodies (RFC 2387) a part at a time: WADO-RS responses and
STOW-RS requests (tessera/client/) alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from tessera.dicomweb.media_type import DICOM


def new_boundary() -> str:
    return f"tessera-{uuid.uuid4().hex}"


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def part_header(
    boundary: str,
    media_type: str,
    transfer_syntax: str | None = None,
    location: str | None = None,
    length: int | None = None,
) -> bytes:
    """The delimiter and headers that open a part (the first part's too)."""
    header = f"--{boundary}\r\nContent-Type: {media_type}"
    if transfer_syntax:
        header += f"; transfer-syntax={transfer_syntax}"
    if length is not None:
        header += f"\r\nContent-Length: {length}"
    if location:
        header += f"\r\nContent-Location: {location}"
    return (header + "\r\n\r\n").encode("latin-1")


PART_END = b"\r\n"


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("latin-1")


def body_length(boundary: str, parts: Iterable[tuple[bytes, int]]) -> int:
    """The length of a body whose parts are (opening `part_header`, payload length): known
    before a payload byte is read, for a Content-Length instead of chunked transfer."""
    return sum(len(head) + size + len(PART_END) for head, size in parts) + len(closing(boundary))


def body(boundary: str, payloads: Iterable[bytes], part_type: str = DICOM) -> bytes:
    """A whole (small) body in memory: one part of `part_type` per payload."""
    out = bytearray()
    for payload in payloads:
        out += part_header(boundary, part_type)
        out += payload
        out += PART_END
    out += closing(boundary)
    return bytes(out)
