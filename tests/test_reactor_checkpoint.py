"""The reactor race fix (tessera.scp.reactor_checkpoint): a sender never goes on while the
association's reactor is still free to take the peer's response off the DIMSE queue."""

from __future__ import annotations

import threading
import time

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tessera.scp import reactor_checkpoint  # noqa: F401  (installs the fix)
from tessera.scp.reactor_checkpoint import ReactorCheckpoint


def _association() -> Association:
    return Association(AE(), "requestor")


def test_a_sender_waits_for_a_reactor_that_has_just_passed_the_checkpoint() -> None:
    assoc = _association()
    checkpoint = assoc._reactor_checkpoint
    # The reactor wrote `_is_paused = True`, its wait() returned at once (checkpoint open),
    # and it has not yet written False: the stale flag that let a sender go on.
    assoc._is_paused = True
    checkpoint.clear()
    assert assoc._is_paused is False, "the sender would proceed while the reactor runs"

    # The reactor comes round again and blocks at the checkpoint; only then may the sender go.
    returned = threading.Event()

    def reactor_round() -> None:
        assoc._is_paused = False
        assoc._is_paused = True
        checkpoint.wait()
        assoc._is_paused = False
        returned.set()

    reactor = threading.Thread(target=reactor_round, daemon=True)
    reactor.start()
    deadline = time.monotonic() + 5
    while not assoc._is_paused:  # the sender's own loop in send_c_store
        assert time.monotonic() < deadline
        time.sleep(0.0001)
    time.sleep(0.05)
    assert not returned.is_set(), "the reactor must stay at the checkpoint while the sender works"
    checkpoint.set()
    assert returned.wait(5)


def test_a_reactor_blocked_at_the_checkpoint_stays_paused_for_the_sender() -> None:
    assoc = _association()
    checkpoint = assoc._reactor_checkpoint
    checkpoint.clear()
    reactor = threading.Thread(target=checkpoint.wait, daemon=True)
    reactor.start()
    deadline = time.monotonic() + 5
    while not assoc._is_paused:
        assert time.monotonic() < deadline
        time.sleep(0.0001)
    checkpoint.clear()  # a second sender in turn
    assert assoc._is_paused is True
    checkpoint.set()
    reactor.join(5)
    assert not reactor.is_alive()


def test_a_killed_association_is_left_paused() -> None:
    assoc = _association()
    assoc._kill = True
    assoc._is_paused = True
    assoc._reactor_checkpoint.clear()
    assert assoc._is_paused is True  # the reactor has exited: a sender must not spin for ever


def test_real_associations_use_it_and_answer() -> None:
    scp = AE(ae_title="CHECKPOINT")
    scp.add_supported_context(Verification)
    seen: list[object] = []
    server = scp.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_ECHO, lambda event: seen.append(event.assoc) or 0x0000)],
    )
    try:
        port = server.server_address[1]
        scu = AE()
        scu.add_requested_context(Verification)
        assoc = scu.associate("127.0.0.1", port, ae_title="CHECKPOINT")
        assert assoc.is_established
        assert isinstance(assoc._reactor_checkpoint, ReactorCheckpoint)
        statuses = [assoc.send_c_echo().Status for _ in range(200)]
        assoc.release()
        assert statuses == [0x0000] * 200
        assert isinstance(seen[0]._reactor_checkpoint, ReactorCheckpoint)  # the acceptor's too
    finally:
        server.shutdown()
