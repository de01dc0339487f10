"""Closes a race in pynetdicom's association reactor (3.0.4 and earlier).

Every `send_*` / `release()` pauses the reactor thread before it waits for the peer's answer:
it clears `_reactor_checkpoint`, then spins until `_is_paused` is true. The reactor sets
`_is_paused = True`, calls `checkpoint.wait()` and, once that returns, sets it back to False.
When the reactor has just passed `wait()` (the checkpoint was still set) but not yet written
False, the sender reads the stale True, goes on, and the reactor then takes the peer's
response off the DIMSE queue as if it were a request ("Received unexpected C-STORE service
message"); the sender waits for its response until the DIMSE timeout (pynetdicom issue #875;
seen in our CI as a failed C-STORE).

The fix keeps pynetdicom's protocol and makes the flag truthful: the checkpoint knows whether
the reactor is blocked inside `wait()`. `clear()` writes `_is_paused = False` unless it is, so
a sender only proceeds once the reactor has come round to the checkpoint again; `wait()`
writes True under the same lock as it blocks. Left alone: a killed association (the reactor has
exited and `kill()` set `_is_paused` for good) and calls from the reactor thread itself (an SCP
handler sending on its own association, or the reactor releasing on a network timeout, both
with `_is_paused` already True).
"""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom.association import Association


class ReactorCheckpoint:
    """A drop-in for the reactor's `threading.Event` that keeps `_is_paused` truthful."""

    def __init__(self, association: Association) -> None:
        self._association = association
        self._condition = threading.Condition()
        self._open = True
        self._reactor_waiting = False

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        with self._condition:
            self._open = True
            self._condition.notify_all()

    def clear(self) -> None:
        with self._condition:
            self._open = False
            if (
                not self._reactor_waiting
                and not self._association._kill
                and threading.current_thread() is not self._association
            ):
                self._association._is_paused = False

    def wait(self, timeout: float | None = None) -> bool:
        with self._condition:
            self._reactor_waiting = True
            self._association._is_paused = True
            try:
                return self._condition.wait_for(lambda: self._open, timeout)
            finally:
                self._reactor_waiting = False


_original_init = Association.__init__


def _init_with_checkpoint(self: Association, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self._reactor_checkpoint = ReactorCheckpoint(self)  # type: ignore[assignment]


def install() -> None:
    """Give every Association made from now on the truthful checkpoint (idempotent)."""
    if Association.__init__ is not _init_with_checkpoint:
        Association.__init__ = _init_with_checkpoint  # type: ignore[method-assign]
