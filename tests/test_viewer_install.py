"""`tessera viewer install` (tessera/dicomweb/viewer_install.py): it fetches the pinned OHIF
build through conformance/ohif/install.sh to the folder `tessera serve --viewer` (no PATH)
serves. Cheap: it runs only where the viewer is already installed (CI's .ci/run installs it
for the OHIF test), where installing again must be a no-op; nothing is downloaded here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tessera.dicomweb import viewer_install
from tests.conftest import ServerProcess


def _tessera(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def installed() -> Path:
    dist = viewer_install.installed_dist()
    if not (dist.parent / ".complete").is_file():
        pytest.skip(f"no OHIF viewer at {dist} (bash conformance/ohif/install.sh installs it)")
    return dist


def test_install_is_idempotent_and_lands_where_serve_looks(installed: Path) -> None:
    marker = installed.parent / ".complete"
    before = marker.stat().st_mtime_ns
    for _ in range(2):
        done = _tessera("viewer", "install")
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip().splitlines()[-1]) == installed
    assert marker.stat().st_mtime_ns == before  # nothing fetched or unpacked again
    where = _tessera("viewer", "path")
    assert where.returncode == 0 and Path(where.stdout.strip()) == installed
    # The version is the pin conformance/ohif/package.json holds (one pin for CI and users).
    pin = json.loads((viewer_install.OHIF_DIR / "package.json").read_text())["ohif"]["version"]
    assert installed.parent.name == pin
    assert viewer_install.viewer_folder("installed") == installed


def test_serve_viewer_without_a_path_serves_the_installed_one(
    installed: Path, server_factory
) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = server_factory(extra_args=["--viewer"]).start()
    page = httpx.get(f"{server.base_url}/viewer/", timeout=30)
    assert page.status_code == 200 and 'window.PUBLIC_URL="/viewer/"' in page.text
    config = httpx.get(f"{server.base_url}/viewer/app-config.js", timeout=30)
    assert config.status_code == 200 and server.dicomweb in config.text
    # A file of the installed build itself, served as is.
    bundle = next(installed.glob("app.bundle.*.js"))
    assert httpx.get(f"{server.base_url}/viewer/{bundle.name}", timeout=30).status_code == 200


def test_serve_names_the_command_when_nothing_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a checkout whose viewer is installed, `installed` says what to run."""
    (tmp_path / "package.json").write_text(json.dumps({"ohif": {"version": "9.9.9"}}))
    monkeypatch.setattr(viewer_install, "OHIF_DIR", tmp_path)
    with pytest.raises(viewer_install.ViewerNotInstalled, match="tessera viewer install"):
        viewer_install.viewer_folder("installed")
    monkeypatch.setattr(viewer_install, "OHIF_DIR", tmp_path / "absent")
    with pytest.raises(viewer_install.ViewerNotInstalled, match="source checkout"):
        viewer_install.viewer_folder("installed")
