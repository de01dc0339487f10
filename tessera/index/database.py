"""Engine set-up for SQLite (embedded default) and PostgreSQL, and transactions.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
BEGIN IMMEDIATE: a writer takes the write lock up front instead of upgrading a read lock
later, which is what produces "database is locked" under concurrent uploads.

`before_commit(conn, callback)` runs a callback as the last statements of the current
transaction (at COMMIT, before the database commits; dropped on rollback): the change feed
uses it so its per-tenant counter lock is always the last lock a transaction takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event, make_url

SQLITE_BUSY_TIMEOUT_MS = 60_000
_BEFORE_COMMIT = "tessera_before_commit"


def before_commit(conn: Connection, callback: Callable[[Connection], None]) -> None:
    """Run `callback(conn)` when the current transaction commits, after every statement the
    transaction's own code made (callbacks in the order given); forgotten on rollback."""
    conn.info.setdefault(_BEFORE_COMMIT, []).append(callback)


def _run_before_commit(conn: Connection) -> None:
    callbacks = conn.info.pop(_BEFORE_COMMIT, None)
    while callbacks:
        callbacks.pop(0)(conn)
        callbacks.extend(conn.info.pop(_BEFORE_COMMIT, ()))


def _forget_before_commit(conn: Connection) -> None:
    # A connection the database dropped is invalidated before this rollback; reading its
    # `info` would raise PendingRollbackError in place of the OperationalError (a 500, not a
    # 503). Its hooks go anyway: the pool clears `info` when it connects again.
    if not conn.invalidated:
        conn.info.pop(_BEFORE_COMMIT, None)


def install_commit_hooks(engine: Engine) -> None:
    """Make `before_commit` work on the engine's connections (done for every Database)."""
    if not event.contains(engine, "commit", _run_before_commit):
        event.listen(engine, "commit", _run_before_commit)
        event.listen(engine, "rollback", _forget_before_commit)


class Database:
    def __init__(self, url: str, pool_size: int = 16) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                pool_size=pool_size,
                max_overflow=pool_size,
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )

        install_commit_hooks(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction (SQLite: BEGIN IMMEDIATE)."""
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                if not conn.invalidated:  # a dropped connection is not made again for this
                    conn.info["write"] = False

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction with one consistent snapshot."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL + NORMAL: a commit may be lost on power failure but the database stays
        # consistent; files are always durable before their rows, so at worst an orphan
        # file is left for the sweeper.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def inserted_pk(result: CursorResult) -> int:
    """The primary key of the row a single-row INSERT wrote."""
    key = result.inserted_primary_key
    if key is None:
        raise ValueError("not a single-row INSERT")
    return int(key[0])
