"""MLLP (Minimal Lower Layer Protocol, HL7 v2 Implementation Guide C.4): each message is
framed as <VT> message <FS><CR> on a TCP stream; the receiver answers with an ACK message in
the same framing."""

from __future__ import annotations

import socket

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
# A single message larger than this is refused (a peer that never sends <FS><CR>).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class MllpError(Exception):
    """The peer closed, timed out or sent something that is not an MLLP frame."""


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


class FrameReader:
    """Reads MLLP frames from a connected socket, one message at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self) -> bytes:
        while True:
            end = self.buffer.find(END_BLOCK)
            if end >= 0:
                block, self.buffer = self.buffer[:end], self.buffer[end + len(END_BLOCK) :]
                start = block.find(START_BLOCK)
                if start < 0:
                    raise MllpError("a frame without its start block (0x0B)")
                return block[start + 1 :]
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                raise MllpError("a frame longer than the limit")
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError as exc:
                raise MllpError("timed out waiting for the peer") from exc
            if not chunk:
                raise MllpError("the peer closed the connection")
            self.buffer += chunk


def send(host: str, port: int, message: bytes, timeout: float = 30) -> bytes:
    """Send one message and return the peer's reply (the ACK), over a new connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(frame(message))
            return FrameReader(sock).read()
    except OSError as exc:
        raise MllpError(f"{host}:{port}: {exc}") from exc
