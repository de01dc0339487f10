"""Socket tuning for DIMSE associations."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import P_DATA


def disable_nagle(assoc: Association) -> None:
    """Send each PDU at once (TCP_NODELAY).

    A DIMSE message is several small writes (command PDU, then data PDUs, then a short last
    one); with Nagle's algorithm the last write waits for the peer's delayed ACK, about 40 ms
    per message on Linux, which dominated C-FIND latency and sub-operation throughput.
    """
    transport = getattr(getattr(assoc, "dul", None), "socket", None)
    raw = getattr(transport, "socket", None)
    if raw is None:
        return
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not a TCP socket, or already closed


def acknowledge_promptly(assoc: Association) -> None:
    """ACK what the peer sends at once (TCP_QUICKACK after every read), on Linux.

    Most SCUs (dcmtk's findscu, movescu, storescu) leave Nagle's algorithm on, and a DIMSE
    request is two PDUs (command, then identifier or data set): the second waits until the
    first is acknowledged. Linux delays that ACK (40 ms) once the connection looks
    interactive, which it does after our A-ASSOCIATE-AC, so every C-FIND waited 40 ms for
    its identifier. The flag is not sticky (the kernel goes back to delayed ACKs), so it is
    set again after each read: one cheap system call per read.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    transport = getattr(getattr(assoc, "dul", None), "socket", None)
    raw = getattr(transport, "socket", None)
    if quickack is None or transport is None or raw is None:
        return
    receive = transport.recv

    def recv_and_ack(nr_bytes: int) -> bytearray:
        data = receive(nr_bytes)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass  # closed meanwhile
        return data

    transport.recv = recv_and_ack


def count_sending_as_activity(event: evt.Event) -> None:
    """Restart the association's idle (network) timer when we send a DIMSE message.

    pynetdicom restarts it only on PDUs received, and its reactor checks it right after our
    handler has answered: a C-STORE of 1 GB that took our handler longer than
    `network_timeout` to ingest was aborted just after its success response went out, though
    the peer had only been waiting for us. Time spent answering is not the peer's silence.
    """
    timer = getattr(getattr(event.assoc, "dul", None), "_idle_timer", None)
    if timer is not None:
        timer.restart()


# PDUs a sender may have queued for the DUL thread before it waits for the socket to drain:
# 32 PDUs of the largest size we negotiate (1 MiB) bound a sending association near 32 MiB.
MAX_QUEUED_PDUS = 32


def pace_sending(assoc: Association, max_queued: int = MAX_QUEUED_PDUS) -> None:
    """Make a sender wait while `max_queued` P-DATA PDUs are still queued for the socket.

    pynetdicom's DIMSE provider splits a data set into PDUs and puts them all on the DUL's
    unbounded queue at once, so sending a 1 GB instance from its file still filled memory
    with it (C-GET: +604 MB) whenever the peer read slower than we read the file. Only the
    sending thread waits; the DUL thread's own PDUs (A-ABORT, A-RELEASE) never do.
    """
    dul = getattr(assoc, "dul", None)
    if dul is None or getattr(dul.send_pdu, "paced", False):
        return
    send = dul.send_pdu
    pending = dul.to_provider_queue

    def paced(primitive: Any) -> None:
        if isinstance(primitive, P_DATA) and threading.current_thread() is not dul:
            # A peer that stops reading is left to the DIMSE timeout, as without pacing.
            stalled_after = time.monotonic() + (assoc.dimse_timeout or 120)
            queued = pending.qsize()
            while queued >= max_queued and dul.is_alive() and not assoc._kill:
                time.sleep(0.0005)
                now, before, queued = time.monotonic(), queued, pending.qsize()
                if queued < before:
                    stalled_after = now + (assoc.dimse_timeout or 120)
                elif now > stalled_after:
                    break
        send(primitive)

    paced.paced = True  # type: ignore[attr-defined]
    dul.send_pdu = paced
