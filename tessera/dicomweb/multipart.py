"""A streaming multipart/related body parser (RFC 2046 §5.1).

Fed chunks as they arrive, it yields events; no part is ever held whole in memory, so a
STOW-RS body of any size is spooled part by part to disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MAX_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The body is not well-formed multipart."""


@dataclass
class PartStart:
    headers: dict[str, str]


@dataclass
class PartData:
    # A view of the chunk that was fed (no copy): use it before the next feed.
    data: bytes | memoryview


@dataclass
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)


class MultipartParser:
    """Works on each fed chunk in place and hands out views of it: a part's bytes are not
    copied here, whatever the chunk size. Only bytes that could begin a delimiter split
    across chunks (or an unfinished header block) are carried to the next chunk."""

    def __init__(self, boundary: str) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("boundary missing or longer than 200 characters")
        self._dash_boundary = b"--" + boundary.encode("latin-1")
        self._delimiter = b"\r\n" + self._dash_boundary
        self._rest = b""
        self._state = _PREAMBLE
        self._preamble_dropped = False
        self.parts_started = 0
        self.parts_completed = 0

    @property
    def finished(self) -> bool:
        """True once the close delimiter has been seen."""
        return self._state == _DONE

    def feed(self, chunk: bytes) -> Iterator[Event]:
        if self._state == _DONE:
            return  # epilogue is ignored
        data = self._rest + chunk if self._rest else chunk
        self._rest = b""
        pos, end = 0, len(data)
        delimiter = self._delimiter
        while True:
            if self._state == _BODY:
                index = data.find(delimiter, pos)
                if index < 0:
                    cut = _safe_end(data, pos, delimiter)
                    if cut > pos:
                        yield PartData(memoryview(data)[pos:cut])
                    pos = cut
                    break
                if index > pos:
                    yield PartData(memoryview(data)[pos:index])
                pos = index + len(delimiter)
                self._state = _AFTER_DELIMITER
                self.parts_completed += 1
                yield PartEnd()
            elif self._state == _AFTER_DELIMITER:
                if end - pos < 2:
                    break
                if data.startswith(b"--", pos):
                    self._state = _DONE
                    return
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > 1024:
                        raise MultipartError("malformed line after a boundary delimiter")
                    break
                if data[pos:eol].strip(b" \t"):
                    raise MultipartError("unexpected characters after a boundary delimiter")
                pos = eol + 2
                self._state = _HEADERS
                self.parts_started += 1
            elif self._state == _HEADERS:
                if data.startswith(b"\r\n", pos):
                    pos += 2
                    self._state = _BODY
                    yield PartStart({})
                    continue
                block_end = data.find(b"\r\n\r\n", pos)
                if block_end < 0:
                    if end - pos > MAX_HEADER_BYTES:
                        raise MultipartError("part headers longer than 16 KiB")
                    break
                headers = _parse_headers(data[pos:block_end])
                pos = block_end + 4
                self._state = _BODY
                yield PartStart(headers)
            elif self._state == _PREAMBLE:
                # The first delimiter may open the body without a CRLF before it.
                if not self._preamble_dropped and data.startswith(self._dash_boundary, pos):
                    pos += len(self._dash_boundary)
                    self._state = _AFTER_DELIMITER
                    continue
                index = data.find(delimiter, pos)
                if index < 0:
                    # The preamble is discarded; keep only what could start a delimiter.
                    keep = len(delimiter) - 1
                    if end - pos > keep:
                        pos = end - keep
                        self._preamble_dropped = True
                    break
                pos = index + len(delimiter)
                self._state = _AFTER_DELIMITER
            else:
                return
        self._rest = bytes(data[pos:])


def _safe_end(data: bytes, start: int, delimiter: bytes) -> int:
    """Where the part's bytes certainly end in `data` (which holds no whole delimiter after
    `start`): before the longest tail that is the beginning of a delimiter, usually none."""
    end = len(data)
    # Such a tail starts with the delimiter's CR and is shorter than the delimiter.
    index = data.find(b"\r", max(start, end - len(delimiter) + 1))
    while index >= 0:
        if delimiter.startswith(data[index:end]):
            return index
        index = data.find(b"\r", index + 1)
    return end


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers
