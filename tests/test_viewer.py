"""`tessera serve --viewer PATH`: a prebuilt OHIF site served at /viewer/, its absolute "/"
paths moved there and its app-config.js pointed at the DICOMweb root. (The real OHIF in a
real browser: conformance/test_ohif.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess

INDEX = (
    '<!doctype html><html><head><script>window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><link href="/app.bundle.css" rel="stylesheet">'
    '</head><body><div id="root"></div><script src="/app-config.js"></script>'
    '<script src="/app.bundle.0123.js"></script></body></html>'
)


@pytest.fixture(scope="module")
def fake_ohif(tmp_path_factory) -> Path:
    """The shape of @ohif/app's dist/ (index.html, app-config.js, bundles, CSS, wasm)."""
    package = tmp_path_factory.mktemp("viewer") / "ohif-app"
    dist = package / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "app-config.js").write_text("window.config = {dataSources: []};")
    (dist / "app.bundle.0123.js").write_text('(()=>{__webpack_require__.p = "/";})();')
    (dist / "77.bundle.4567.js").write_text("console.log('chunk');")
    (dist / "app.bundle.css").write_text("@font-face{src:url(/a34f.woff2)}")
    (dist / "decoder.wasm").write_bytes(b"\0asm\1\0\0\0")
    (dist / "assets" / "favicon.ico").write_bytes(b"ico")
    return package


@pytest.fixture(scope="module")
def viewer_server(fake_ohif) -> ServerProcess:
    workdir = fake_ohif.parent
    server = ServerProcess(
        data_dir=workdir / "data",
        database_url=f"sqlite:///{workdir / 'index.sqlite3'}",
        env_extra={"TESSERA_WORKERS": "1"},
        # The package folder: its dist/ is found.
        extra_args=["--viewer", str(fake_ohif)],
    )
    yield server.start()
    server.stop()


def test_index_is_served_with_paths_under_viewer(viewer_server):
    response = httpx.get(f"{viewer_server.base_url}/viewer/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'window.PUBLIC_URL="/viewer/"' in html
    assert 'src="/viewer/app-config.js"' in html
    assert 'src="/viewer/app.bundle.0123.js"' in html
    assert 'href="/viewer/app.bundle.css"' in html
    assert 'href="/' not in html.replace('href="/viewer/', "")


def test_bare_path_redirects_and_app_routes_get_the_index(viewer_server):
    response = httpx.get(f"{viewer_server.base_url}/viewer")
    assert response.status_code == 308
    assert response.headers["location"].endswith("/viewer/")
    # A route of the single-page app (opening a study) is the app's index page.
    response = httpx.get(
        f"{viewer_server.base_url}/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"}
    )
    assert response.status_code == 200
    assert 'window.PUBLIC_URL="/viewer/"' in response.text


def test_app_config_points_at_the_dicomweb_root(viewer_server):
    response = httpx.get(f"{viewer_server.base_url}/viewer/app-config.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    text = response.text
    root = viewer_server.dicomweb
    for key in ("qidoRoot", "wadoRoot", "wadoUriRoot"):
        assert f'"{key}": "{root}"' in text
    assert '"routerBasename": "/viewer"' in text


def test_app_config_follows_the_address_the_browser_used(viewer_server):
    """Behind a proxy the viewer points at the DICOMweb root as the browser reaches it."""
    response = httpx.get(
        f"{viewer_server.base_url}/viewer/app-config.js",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "pacs.example",
            "X-Forwarded-Prefix": "/archive",
        },
    )
    assert '"qidoRoot": "https://pacs.example/archive/dicomweb"' in response.text
    assert '"routerBasename": "/archive/viewer"' in response.text


def test_bundles_and_css_load_their_assets_from_viewer(viewer_server):
    base = f"{viewer_server.base_url}/viewer"
    bundle = httpx.get(f"{base}/app.bundle.0123.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert '__webpack_require__.p = "/viewer/"' in bundle.text
    assert httpx.get(f"{base}/77.bundle.4567.js").text == "console.log('chunk');"
    css = httpx.get(f"{base}/app.bundle.css")
    assert css.headers["content-type"].startswith("text/css")
    assert "url(/viewer/a34f.woff2)" in css.text
    wasm = httpx.get(f"{base}/decoder.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    assert httpx.get(f"{base}/assets/favicon.ico").content == b"ico"


def test_files_outside_the_viewer_are_not_served(viewer_server, fake_ohif):
    (fake_ohif / "secret.txt").write_text("secret")
    response = httpx.get(f"{viewer_server.base_url}/viewer/%2E%2E/secret.txt")
    assert "secret" not in response.text
    response = httpx.get(f"{viewer_server.base_url}/viewer/..%2Fsecret.txt")
    assert "secret" not in response.text


def test_the_portal_links_to_the_viewer(viewer_server):
    """The portal (docs/portal.md) learns where the viewer is from its config.json."""
    config = httpx.get(f"{viewer_server.base_url}/portal/config.json").json()
    assert config["viewer"] == "/viewer/"
    behind_proxy = httpx.get(
        f"{viewer_server.base_url}/portal/config.json", headers={"X-Forwarded-Prefix": "/pacs"}
    ).json()
    assert behind_proxy["viewer"] == "/pacs/viewer/"


def test_dicomweb_is_unchanged_beside_the_viewer(viewer_server):
    assert httpx.get(f"{viewer_server.base_url}/healthz").status_code == 200
    response = httpx.post(f"{viewer_server.dicomweb}/studies", content=b"x")
    assert response.status_code == 415


def test_a_folder_that_is_not_ohif_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "serve", "--viewer", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TESSERA_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 2
    assert "is not a prebuilt OHIF viewer" in done.stderr
