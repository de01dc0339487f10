"""Shared benchmark plumbing: start servers (Tessera, optionally Orthanc), generate data,
measure RSS. Benchmarks print figures; they never assert."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, make_url, text

PG_URL = os.environ.get("TESSERA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    """Wait until something listens on a local TCP port (a DIMSE listener)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def wait_http(url: str, timeout: float = 60, auth: tuple[str, str] | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1, auth=auth).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def fresh_pg_database() -> str:
    admin = make_url(PG_URL)
    name = f"tessera_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    engine = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


@dataclass
class Server:
    name: str
    dicomweb: str
    process: subprocess.Popen
    cleanup: list = field(default_factory=list)
    dicom_port: int = 0
    log: Path | None = None  # the server's output (Tessera's JSON log lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        for action in self.cleanup:
            action()


def start_tessera(
    database: str = "sqlite",
    extra_env: dict[str, str] | None = None,
    startup_timeout: float = 60,
) -> Server:
    workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    port = free_port()
    env = dict(os.environ, TESSERA_DATA_DIR=str(workdir / "data"), TESSERA_PORT=str(port))
    env["TESSERA_LOG_LEVEL"] = "WARNING"
    env["TESSERA_DIMSE_PORT"] = "0"  # benchmarks that want DIMSE pass a port in extra_env
    cleanup = [lambda: shutil.rmtree(workdir, ignore_errors=True)]
    if database == "postgresql":
        url = fresh_pg_database()
        env["TESSERA_DATABASE_URL"] = url
        cleanup.append(lambda: drop_pg_database(url))
    env.update(extra_env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "serve"],
        env=env,
        stdout=open(workdir / "server.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # stop() signals the whole group (HTTP workers too)
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", startup_timeout)
    return Server(
        f"tessera/{database}",
        f"http://127.0.0.1:{port}/dicomweb",
        process,
        cleanup,
        log=workdir / "server.log",
    )


def orthanc_available() -> bool:
    return shutil.which("Orthanc") is not None and Path("/usr/share/orthanc/plugins").exists()


def start_orthanc(extra_config: dict | None = None) -> Server:
    """Orthanc with its DICOMweb plugin, from Debian's packages, on free ports (its DICOM
    port is `server.dicom_port`; `extra_config` adds or overrides configuration keys)."""
    workdir = Path(tempfile.mkdtemp(prefix="orthanc-bench-"))
    port, dicom_port = free_port(), free_port()
    plugins = [str(p) for p in Path("/usr/share/orthanc/plugins").glob("libOrthancDicomWeb*.so*")]
    config = {
        "Name": "bench",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": plugins,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StorageCompression": False,
        "HttpThreadsCount": 50,
    }
    config.update(extra_config or {})
    (workdir / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        ["Orthanc", str(workdir / "orthanc.json")],
        stdout=open(workdir / "orthanc.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/system")
    server = Server("orthanc", f"http://127.0.0.1:{port}/dicom-web", process)
    server.dicom_port = dicom_port
    server.cleanup.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
    return server


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children (a server's
    HTTP workers): the difference over a run, divided by the work done, is CPU per unit."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class RssSampler:
    """Samples a process's resident set size in a background thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        # The baseline counts the children too (HTTP workers, ...), as the samples do.
        self.baseline = self._rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        rss = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            rss += child.memory_info().rss
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self._rss()
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
