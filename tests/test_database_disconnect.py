"""A PostgreSQL connection lost inside a transaction surfaces as the driver's OperationalError
(which every path answers with 503 and Retry-After), never as another error raised while the
transaction is rolled back.

The commit hooks of `tessera.index.database` run on rollback too; on a connection that
SQLAlchemy has just invalidated they must not touch it, or SQLAlchemy's PendingRollbackError
replaces the OperationalError and the request answers 500 (seen under a database restart:
tests/test_database_restart.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tessera.index.database import Database, before_commit
from tests.conftest import PG_URL, create_pg_database, drop_pg_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def database():  # type: ignore[no-untyped-def]
    if not PG_URL:
        pytest.skip("TESSERA_TEST_PG_URL not set")
    url = create_pg_database()
    db = Database(url, pool_size=2)
    try:
        yield db
    finally:
        db.dispose()
        drop_pg_database(url)


def _terminate_backend(url: str, pid: int) -> None:
    """End one server process, as a database restart does to every session."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    engine.dispose()


@pytest.mark.parametrize("transaction", ["read", "write"])
def test_a_lost_connection_is_an_operational_error(database, transaction) -> None:  # type: ignore[no-untyped-def]
    begin = database.read if transaction == "read" else database.write
    ran: list[str] = []
    with pytest.raises(OperationalError):
        with begin() as conn:
            # A hook of the lost transaction (as the change feed registers one).
            before_commit(conn, lambda _conn: ran.append("lost"))
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            _terminate_backend(str(database.engine.url), pid)
            conn.execute(text("SELECT 1"))
    # The pool makes a new connection for the next transaction; the lost transaction's hook
    # is not run by it.
    with database.write() as conn:
        before_commit(conn, lambda _conn: ran.append("next"))
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert ran == ["next"]
