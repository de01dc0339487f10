"""Background work that must run on one node at a time when several nodes share one index.

On PostgreSQL a session advisory lock names the job: the node that takes it does the work,
the others skip this round (and try again at their next interval). A node that dies drops
its connection and with it the lock. SQLite is one machine's file: nothing to share.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from tessera.index.database import Database


def lock_id(job: str) -> int:
    """A stable 31-bit key for the job's advisory lock."""
    return zlib.crc32(f"tessera:{job}".encode()) & 0x7FFFFFFF


@contextmanager
def run_once_across_nodes(database: Database, job: str) -> Iterator[bool]:
    """Yields True when this node holds the job's lock for the duration (always on SQLite),
    False when another node is doing the job now."""
    if database.dialect != "postgresql":
        yield True
        return
    key = lock_id(job)
    with database.engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
