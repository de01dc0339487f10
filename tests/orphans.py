"""Child processes of the tests (servers, SeaweedFS) end when the test process dies.

A test process that is killed (a stopped run, a crashed xdist worker) skips its fixtures'
teardown; its servers then ran on as orphans, and their background loops loaded the
machine enough that later runs crawled or missed their deadlines.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for Popen: the child gets SIGTERM when the thread that started it ends
    (Linux; elsewhere nothing). Start children from a thread that lives as long as they do."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
