"""Helpers for the DIMSE tests: a server with its DIMSE listener, peers registered through
the real `tessera peers` command, and the dcmtk binaries (never the pynetdicom apps that
share their names on PATH)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from tests.conftest import ServerProcess, free_port

DCMTK = Path("/usr/bin")
SERVER_AET = "TESSERA"


def dcmtk(tool: str) -> str:
    path = DCMTK / tool
    if not path.exists():
        pytest.skip(f"dcmtk's {tool} is not installed")
    return str(path)


def has_dcmtk() -> bool:
    return all((DCMTK / tool).exists() for tool in ("echoscu", "storescu", "findscu"))


def start_dimse_server(server_factory, **env: str) -> ServerProcess:  # type: ignore[no-untyped-def]
    port = free_port()
    env_extra = {
        "TESSERA_DIMSE_PORT": str(port),
        "TESSERA_WORKERS": "1",
        "TESSERA_LOG_LEVEL": "INFO",
    }
    env_extra.update(env)
    server = server_factory(env_extra=env_extra)
    server.dimse_port = port  # type: ignore[attr-defined]
    server.start()
    wait_port(port)
    return server


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"DIMSE port {port} did not open")


def tessera_cli(
    server: ServerProcess, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a `tessera` command against the server's index and data folder."""
    env = dict(os.environ)
    env.update(
        TESSERA_DATABASE_URL=server.database_url,
        TESSERA_DATA_DIR=str(server.data_dir),
        PYTHONPATH=os.environ.get("PYTHONPATH", os.getcwd()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tessera {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def add_peer(server: ServerProcess, ae_title: str, *args: str, port: int = 0) -> None:
    tessera_cli(server, "peers", "add", ae_title, "--host", "127.0.0.1", "--port", str(port), *args)


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a Part 10 file, after its File Meta Information."""
    with open(path, "rb") as fh:
        pydicom.filereader.read_preamble(fh, False)
        pydicom.filereader._read_file_meta_info(fh)
        return fh.read()


# dcmtk's storescu proposes only uncompressed syntaxes unless told: the flag that makes it
# propose each stored syntax as it is.
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def transfer_syntax_of(path: Path) -> str | None:
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        return str(meta.TransferSyntaxUID)
    except Exception:
        return None


def copy_files(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for index, path in enumerate(paths):
        target = folder / f"{index:04d}_{path.name}"
        shutil.copyfile(path, target)
        copied.append(target)
    return copied
