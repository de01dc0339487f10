"""One server per database with the QIDO test corpus loaded, shared by a test session."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import httpx
from sqlalchemy import create_engine

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.index.sources import add_source
from tessera.index.tenancy import tenant_by_name
from tests.conftest import PG_URL, ServerProcess, create_pg_database, drop_pg_database
from tests.qido_corpus import charset_files, synthetic_instances

_SERVERS: dict[str, ServerProcess] = {}


def _stow(server: ServerProcess, parts: list[bytes], source: str) -> None:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        params={"source": source},
        content=multipart_writer.body(boundary, parts),
        headers={"Content-Type": request_content_type(boundary)},
        timeout=120,
    )
    assert response.status_code == 200, response.text


def corpus_server(database: str) -> ServerProcess:
    """A running server (SQLite or PostgreSQL) holding the corpus; started once."""
    if database in _SERVERS:
        return _SERVERS[database]
    workdir = Path(tempfile.mkdtemp(prefix="qido-test-"))
    if database == "sqlite":
        url = f"sqlite:///{workdir / 'index.sqlite3'}"
    else:
        url = create_pg_database()
    server = ServerProcess(data_dir=workdir / "data", database_url=url)
    server.env_extra["TESSERA_WORKERS"] = "1"
    server.start()

    def cleanup() -> None:
        server.stop()
        if database != "sqlite":
            drop_pg_database(url)
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(cleanup)
    engine = create_engine(url)
    with engine.begin() as conn:
        tenant = tenant_by_name(conn, "default")
        assert tenant is not None
        add_source(conn, tenant.id, "clinicB")
    engine.dispose()
    by_source: dict[str, list[bytes]] = {}
    for source, data in synthetic_instances():
        by_source.setdefault(source, []).append(data)
    by_source["default"] += [path.read_bytes() for path in charset_files()]
    # One instance per request: rows get the same keys in the same order on every database,
    # so results that tie on the sort order compare equal across databases too.
    for source, parts in by_source.items():
        for part in parts:
            _stow(server, [part], source)
    _SERVERS[database] = server
    return server


def pg_available() -> bool:
    return bool(PG_URL)
