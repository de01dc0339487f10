"""Writing multipart/related response bodies (RFC 2387) a part at a time."""

from __future__ import annotations

import uuid


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


def single_body(boundary: str, parts: list[tuple[bytes, str, str | None]]) -> bytes:
    """A whole (small) body from (payload, media type, transfer syntax) parts."""
    out = bytearray()
    for payload, media_type, syntax in parts:
        out += part_header(boundary, media_type, syntax, length=len(payload))
        out += payload
        out += PART_END
    out += closing(boundary)
    return bytes(out)
