"""Credentials re-checked while a long-lived connection stays open.

A request is authenticated once, at its start; a change stream (`{api}/changes/stream`) or a
UPS notification channel (`/subscribers/{AE}`) can stay open for hours. `CredentialWatch`
asks again, at most every `RECHECK_SECONDS`, whether the credentials that opened it still
authenticate (`tessera.auth.authenticate.current_scope`): when the session is logged out,
the API key or viewer token revoked, the user disabled or their password changed, the
connection ends within that bound. A changed role or source list applies from the next
check on. Re-checking is polled rather than pushed because revocation can happen in another
worker process or server.
"""

from __future__ import annotations

import asyncio
import time

from tessera.auth.authenticate import Identity, current_scope
from tessera.index.database import Database
from tessera.scope import Scope

# How stale a long-lived connection's credentials may be: one indexed look-up per open
# connection this often.
RECHECK_SECONDS = 5.0


class CredentialWatch:
    def __init__(self, database: Database, identity: Identity | None, scope: Scope) -> None:
        self._database = database
        self._identity = identity
        self.scope = scope
        self._checked = time.monotonic()

    async def current(self) -> Scope | None:
        """The caller's Scope now (re-read when a check is due), None once revoked."""
        if self._identity is None:  # no credentials were involved (a public path)
            return self.scope
        if time.monotonic() - self._checked < RECHECK_SECONDS:
            return self.scope
        found = await asyncio.to_thread(current_scope, self._database, self._identity, self.scope)
        self._checked = time.monotonic()
        if found is not None:
            self.scope = found
        return found
