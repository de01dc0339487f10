"""Shared fixtures: real server processes over SQLite or PostgreSQL, real DICOM files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from tessera.archive import Archive, migrate_index
from tessera.config import Settings

PG_URL = os.environ.get("TESSERA_TEST_PG_URL", "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A `tessera serve` process; restartable on the same data (crash tests)."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    env_extra: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base_url}/dicomweb"

    def start(self, timeout: float = 90) -> ServerProcess:
        env = dict(os.environ)
        env.update(
            TESSERA_DATABASE_URL=self.database_url,
            TESSERA_DATA_DIR=str(self.data_dir),
            TESSERA_PORT=str(self.port),
            TESSERA_LOG_FORMAT="json",
            # No DIMSE listener unless a test asks for one (parallel servers, one port).
            TESSERA_DIMSE_PORT="0",
        )
        env.update(self.env_extra)
        self.log_path = self.data_dir.parent / f"server-{self.port}-{int(time.time() * 1000)}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tessera.cli", "serve", *self.extra_args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own process group: kill() takes the HTTP worker processes down with it.
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL the whole server (supervisor and workers), as a crash would."""
        if self.process:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def create_pg_database() -> str:
    """A fresh PostgreSQL database for one server; returns its URL."""
    admin_url = make_url(PG_URL)
    name = f"tessera_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    target = make_url(url)
    engine = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Each test using this runs on SQLite and on PostgreSQL (skipped without a URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite3'}"
        return
    if not PG_URL:
        pytest.skip("TESSERA_TEST_PG_URL not set")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def migrated_archive(data_dir: Path, database_url: str) -> Archive:
    """An archive opened in-process on `database_url`, migrated first (opening never
    migrates: see tessera.archive). The caller closes it."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    migrate_index(settings)
    return Archive.open(settings)


@pytest.fixture
def server_factory(tmp_path, database_url):  # type: ignore[no-untyped-def]
    """Build (not start) a server on this test's database; stopped at the end."""
    made: list[ServerProcess] = []

    def make(**kwargs) -> ServerProcess:  # type: ignore[no-untyped-def]
        kwargs.setdefault("data_dir", tmp_path / f"data{len(made)}")
        kwargs.setdefault("database_url", database_url)
        server = ServerProcess(**kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def server(server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A running server with default settings on SQLite and on PostgreSQL."""
    return server_factory().start()


def dicom_testdata_files() -> list[Path]:
    """Every DICOM file of pydicom's test set and the pydicom-data package."""
    from pydicom.data import get_testdata_files

    return sorted(
        {
            Path(p)
            for p in get_testdata_files("*")
            if Path(p).is_file() and (p.lower().endswith(".dcm") or "." not in Path(p).name)
        }
    )


@pytest.fixture(scope="session")
def testdata() -> list[Path]:
    return dicom_testdata_files()


def index_rows(database_url: str, sql: str, **params) -> list:  # type: ignore[no-untyped-def]
    """Read the server's index directly (to check what ingest recorded)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()
