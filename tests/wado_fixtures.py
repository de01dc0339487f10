"""A session-scoped server holding the WADO test study, on SQLite and PostgreSQL.

Starting one server per database for all WADO test modules (instead of one per test) keeps
the WADO tests' wall time small; tests only read from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tests.conftest import PG_URL, ServerProcess, create_pg_database, drop_pg_database
from tests.wado_data import StoredObject, build_study

VIEWER_ORIGIN = "http://viewer.example"


@dataclass
class WadoServer:
    server: ServerProcess
    objects: list[StoredObject]

    @property
    def root(self) -> str:
        return self.server.dicomweb

    def get(self, name: str) -> StoredObject:
        return next(o for o in self.objects if o.name == name)

    @property
    def study(self) -> str:
        return self.objects[0].study


def store(server: ServerProcess, objects: list[StoredObject]) -> None:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=multipart_writer.body(boundary, [o.data for o in objects]),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def wado(request, tmp_path_factory) -> WadoServer:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("wado")
    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{tmp / 'index.sqlite3'}", None
    else:
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        url = create_pg_database()
        cleanup = url
    server = ServerProcess(
        data_dir=tmp / "data",
        database_url=url,
        env_extra={"TESSERA_CORS_ORIGINS": VIEWER_ORIGIN, "TESSERA_WORKERS": "1"},
    ).start()
    objects = build_study()
    try:
        store(server, objects)
        yield WadoServer(server, objects)
    finally:
        server.stop()
        if cleanup:
            drop_pg_database(cleanup)
