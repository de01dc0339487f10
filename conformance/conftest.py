"""Fixtures for the client conformance tests: a real `tessera serve` on SQLite (the clients
see HTTP, not the index, so one database is enough here), uploads over STOW-RS, and the
installed client tools (OHIF + playwright-core, Debian's Chromium, dcmtk)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tests.conftest import ServerProcess

HERE = Path(__file__).resolve().parent
OHIF_DIR = HERE / "ohif"
CHROMIUM = "/usr/bin/chromium"
# Screenshots and other artefacts a person may want to look at after a run (git-ignored).
ARTIFACTS = HERE / "artifacts"


def stow(dicomweb: str, instances: Iterable[bytes]) -> None:
    """Store instances with one STOW-RS request; every one must be stored."""
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{dicomweb}/studies",
        content=multipart_writer.body(boundary, list(instances)),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def sqlite_server_factory(tmp_path) -> Iterator:  # type: ignore[no-untyped-def]
    """Build (not start) `tessera serve` processes on SQLite; all stopped at the end."""
    made: list[ServerProcess] = []

    def make(**kwargs) -> ServerProcess:  # type: ignore[no-untyped-def]
        data_dir = tmp_path / f"data{len(made)}"
        kwargs.setdefault("data_dir", data_dir)
        kwargs.setdefault("database_url", f"sqlite:///{tmp_path / f'index{len(made)}.sqlite3'}")
        # One HTTP worker: the clients test behaviour, and the machine has two cores.
        kwargs.setdefault("env_extra", {}).setdefault("TESSERA_WORKERS", "1")
        server = ServerProcess(**kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture(scope="session")
def ohif_dist() -> Path:
    """The prebuilt OHIF viewer's dist/ folder and playwright-core, installed by
    conformance/ohif/install.sh (idempotent; .ci/run runs it too)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are needed to install OHIF and playwright-core")
    done = subprocess.run(
        ["bash", str(OHIF_DIR / "install.sh")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    return CHROMIUM
