"""Wake long-polling change-feed readers when a tenant's feed grows.

One watcher per process. While at least one reader waits, it reads every tenant's newest
sequence number (the tiny `change_counter` table) every `interval` seconds and wakes the
waiters when a number moved. Changes committed by any process (other HTTP workers, the
DIMSE listener, the CLI) are seen this way, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tessera.index.changes import last_seqs
from tessera.index.database import Database

log = logging.getLogger(__name__)


class ChangeWatcher:
    def __init__(self, database: Database, interval: float = 0.05) -> None:
        self.database = database
        self.interval = interval
        self._seen: dict[int, int] = {}
        self._changed: asyncio.Event | None = None
        self._waiters = 0
        self._task: asyncio.Task | None = None

    async def wait_past(self, tenant_id: int, seq: int, timeout: float) -> bool:
        """Wait until the tenant's feed holds a change after `seq`; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiters += 1
        try:
            if self._changed is None:
                self._changed = asyncio.Event()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._poll())
            while self._seen.get(tenant_id, -1) <= seq:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                changed = self._changed
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    return False
            return True
        finally:
            self._waiters -= 1

    async def _poll(self) -> None:
        while self._waiters > 0:
            try:
                seen = await asyncio.to_thread(self._read)
            except Exception:  # the database may be briefly unreachable: keep waiting
                log.warning("change watcher could not read the feed counters", exc_info=True)
                seen = self._seen
            if seen != self._seen:
                self._seen = seen
                changed, self._changed = self._changed, asyncio.Event()
                if changed is not None:
                    changed.set()
            await asyncio.sleep(self.interval)

    def _read(self) -> dict[int, int]:
        with self.database.read() as conn:
            return last_seqs(conn)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
