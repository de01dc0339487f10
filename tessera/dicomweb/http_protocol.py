"""The HTTP protocol `tessera serve` runs: uvicorn's httptools protocol with the header
guard (header_guard.py), handing request bodies over without copying them.

uvicorn appends each received piece of a body to a bytearray and copies that into a new
bytes object when the application asks for it: two copies of every byte of a STOW-RS upload
(hundreds of MB per minute) before the multipart parser sees it. Here the pieces are kept as
received, and the application gets the one piece itself (or the pieces joined, when several
arrived between two reads).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT

from tessera.dicomweb.header_guard import HeaderGuardProtocol


class BodyPieces:
    """A request body's pieces not yet read by the application. uvicorn's cycle reads it
    with `len()` and `bytes()`, as it would its bytearray."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def append(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.size += len(piece)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        if len(self.pieces) == 1:
            return self.pieces[0]
        return b"".join(self.pieces)


class ArchiveHttpProtocol(HeaderGuardProtocol):
    def on_body(self, body: bytes) -> None:
        # uvicorn's own on_body, with BodyPieces in place of its bytearray (which its
        # cycle's receive() puts back, empty, after each read).
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        pending = _pieces_of(cycle)
        pending.append(body)
        if len(pending) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


def _pieces_of(cycle: Any) -> BodyPieces:
    """The cycle's BodyPieces, put in place of uvicorn's bytearray if need be."""
    pending = cycle.body
    if isinstance(pending, BodyPieces):
        return pending
    fresh = BodyPieces()
    if pending:
        fresh.append(bytes(pending))
    cycle.body = fresh
    return fresh
