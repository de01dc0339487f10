"""Socket tuning of DIMSE associations (tessera/scp/transport.py) on real TCP sockets."""

from __future__ import annotations

import socket
import sys

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

from tessera.scp.transport import acknowledge_promptly

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="TCP_QUICKACK is Linux only"
)


def _quickack(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)


def _connected_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def test_every_read_acknowledges_at_once() -> None:
    """After a request/answer exchange Linux delays ACKs (the peer's Nagle then holds its
    next PDU 40 ms); every read through the association's transport turns that off."""
    client, server = _connected_pair()
    with client, server:
        assoc = Association(AE(), mode="acceptor")
        transport = AssociationSocket(assoc, client_socket=server)
        assoc.dul.socket = transport

        def exchange() -> None:
            client.sendall(b"\x04\x00\x00\x00\x00\x02ab")
            assert transport.recv(8) == bytearray(b"\x04\x00\x00\x00\x00\x02ab")
            server.sendall(b"answer")  # an answer right after a request: interactive
            client.recv(6)

        exchange()
        assert _quickack(server) == 0  # the kernel's delayed-ACK ("ping-pong") mode
        acknowledge_promptly(assoc)
        for _ in range(2):  # each answer turns delayed ACKs back on; the next read undoes it
            exchange()
            assert _quickack(server) == 0
            client.sendall(b"\x04\x00\x00\x00\x00\x01c")
            assert transport.recv(7) == bytearray(b"\x04\x00\x00\x00\x00\x01c")
            assert _quickack(server) == 1
