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
    data: bytes


@dataclass
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)


class MultipartParser:
    def __init__(self, boundary: str) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("boundary missing or longer than 200 characters")
        self._dash_boundary = b"--" + boundary.encode("latin-1")
        self._delimiter = b"\r\n" + self._dash_boundary
        self._buffer = bytearray()
        self._state = _PREAMBLE
        self.parts_started = 0
        self.parts_completed = 0

    @property
    def finished(self) -> bool:
        """True once the close delimiter has been seen."""
        return self._state == _DONE

    def feed(self, chunk: bytes) -> Iterator[Event]:
        if self._state == _DONE:
            return  # epilogue is ignored
        self._buffer += chunk
        while True:
            if self._state == _PREAMBLE:
                if not self._find_first_delimiter():
                    return
            elif self._state == _AFTER_DELIMITER:
                if len(self._buffer) < 2:
                    return
                if self._buffer[:2] == b"--":
                    self._state = _DONE
                    self._buffer.clear()
                    return
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > 1024:
                        raise MultipartError("malformed line after a boundary delimiter")
                    return
                if self._buffer[:end].strip(b" \t"):
                    raise MultipartError("unexpected characters after a boundary delimiter")
                del self._buffer[: end + 2]
                self._state = _HEADERS
                self.parts_started += 1
            elif self._state == _HEADERS:
                if self._buffer[:2] == b"\r\n":
                    del self._buffer[:2]
                    self._state = _BODY
                    yield PartStart({})
                    continue
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEADER_BYTES:
                        raise MultipartError("part headers longer than 16 KiB")
                    return
                headers = _parse_headers(bytes(self._buffer[:end]))
                del self._buffer[: end + 4]
                self._state = _BODY
                yield PartStart(headers)
            elif self._state == _BODY:
                index = self._buffer.find(self._delimiter)
                if index < 0:
                    # Keep a tail that could be the start of a delimiter split across chunks.
                    keep = len(self._delimiter) - 1
                    if len(self._buffer) > keep:
                        cut = len(self._buffer) - keep
                        yield PartData(bytes(self._buffer[:cut]))
                        del self._buffer[:cut]
                    return
                if index:
                    yield PartData(bytes(self._buffer[:index]))
                del self._buffer[: index + len(self._delimiter)]
                self._state = _AFTER_DELIMITER
                self.parts_completed += 1
                yield PartEnd()
            else:
                return

    def _find_first_delimiter(self) -> bool:
        if self._buffer.startswith(self._dash_boundary):
            del self._buffer[: len(self._dash_boundary)]
            self._state = _AFTER_DELIMITER
            return True
        index = self._buffer.find(self._delimiter)
        if index < 0:
            # The preamble is discarded; keep only what could start a delimiter.
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                del self._buffer[: len(self._buffer) - keep]
            return False
        del self._buffer[: index + len(self._delimiter)]
        self._state = _AFTER_DELIMITER
        return True


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
