"""Child processes of the tests (servers, SeaweedFS) end when the test process dies.

A test process that is killed (a stopped run, a crashed xdist worker) skips its fixtures'
teardown; its servers then ran on as orphans, and their background loops loaded the
machine enough that later runs crawled or missed their deadlines.
"""

from __future__ import annotations

import os
import shutil
import sys

# util-linux's setpriv sets the parent-death signal and then execs the command, so no
# Python runs between fork and exec (a `preexec_fn` can deadlock in a threaded process).
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None

# A parent that dies before setpriv has set the signal never sends it: the shell then finds
# itself adopted (its parent is no longer the starter) and gives up instead of running on.
_ONLY_WHILE_PARENT_LIVES = '[ "$PPID" = "$0" ] || exit 1; exec "$@"'


def dying_with_parent(command: list[str]) -> list[str]:
    """`command`, made to get SIGTERM when the thread that starts it ends (where setpriv
    exists; elsewhere unchanged). Start children from a thread that lives as long as they do."""
    if _SETPRIV is None:
        return command
    return [
        _SETPRIV,
        "--pdeathsig",
        "TERM",
        "sh",
        "-c",
        _ONLY_WHILE_PARENT_LIVES,
        str(os.getpid()),
        *command,
    ]
