"""A module-scoped server for the documents and metadata-and-bulk-data tests, on SQLite and
PostgreSQL (tests add their own studies; none reads another's)."""

from __future__ import annotations

import pytest

from tests.conftest import PG_URL, ServerProcess, create_pg_database, drop_pg_database

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def document_archive(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Use as `archive = pytest.fixture(scope="module", params=DATABASES)(document_archive)`."""
    tmp = tmp_path_factory.mktemp("documents")
    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{tmp / 'index.sqlite3'}", None
    else:
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        url = cleanup = create_pg_database()
    server = ServerProcess(
        data_dir=tmp / "data",
        database_url=url,
        env_extra={"TESSERA_WORKERS": "1", "TESSERA_MAX_DOCUMENT_BYTES": "3000000"},
    ).start(timeout=120)  # generous: CI machines are shared
    try:
        yield server
    finally:
        server.stop()
        if cleanup:
            drop_pg_database(cleanup)
