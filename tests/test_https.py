"""HTTPS: `tessera serve` with TESSERA_HTTP_TLS_CERT / _KEY (and _CA for client certificates),
checked with real TLS clients (httpx, http.client, dcmtk for the DIMSE listener's mutual TLS)."""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
import warnings

import httpx
import pytest
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess
from tests.dimse_support import SERVER_AET, dcmtk, run, start_dimse_server
from tests.tls_support import Certificates, client_context, make_certificates

# TLS is the same on every index: these run on SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:  # type: ignore[no-untyped-def]
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def https_server(server_factory, certificates: Certificates, **env: str) -> ServerProcess:  # type: ignore[no-untyped-def]
    settings = {
        "TESSERA_HTTP_TLS_CERT": str(certificates.server.cert),
        "TESSERA_HTTP_TLS_KEY": str(certificates.server.key),
        "TESSERA_WORKERS": "1",
    }
    settings.update(env)
    return server_factory(env_extra=settings, verify=client_context(certificates))


def test_https_serves_dicomweb_with_keep_alive_and_hsts(server_factory, certificates) -> None:  # type: ignore[no-untyped-def]
    # Two workers: each (spawned) worker process builds its TLS context from the settings.
    server = https_server(server_factory, certificates, TESSERA_WORKERS="2").start()
    assert server.base_url.startswith("https://")
    trusted = client_context(certificates)
    study = StudySpec(patient_name="TLS^STOW")
    data = ct_image(study, generate_uid(), 1, rows=32, columns=32)
    boundary = multipart_writer.new_boundary()
    with httpx.Client(verify=trusted, timeout=30) as client:
        stored = client.post(
            f"{server.dicomweb}/studies",
            content=multipart_writer.body(boundary, [data]),
            headers={
                "Content-Type": request_content_type(boundary),
                "Accept": "application/dicom+json",
            },
        )
        assert stored.status_code == 200, stored.text
        assert stored.headers["strict-transport-security"] == "max-age=31536000"
        # URLs in responses use the scheme the client used.
        retrieve_url = stored.json()["00081190"]["Value"][0]
        assert retrieve_url.startswith(f"https://127.0.0.1:{server.port}/dicomweb/studies/")
        found = client.get(f"{server.dicomweb}/studies", params={"PatientName": "TLS^STOW"})
        assert found.status_code == 200 and len(found.json()) == 1
        whole = client.get(
            retrieve_url, headers={"Accept": 'multipart/related; type="application/dicom"'}
        )
        assert whole.status_code == 200 and data in whole.content

    # HTTP/1.1 keep-alive over TLS: one TLS connection carries several requests.
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=trusted, timeout=30)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        assert first.status == 200 and sock is not None
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        for _ in range(3):
            connection.request("GET", "/dicomweb/studies?PatientName=TLS*")
            again = connection.getresponse()
            assert again.status == 200 and len(again.read()) > 2
            assert again.getheader("connection", "").lower() != "close"
            assert connection.sock is sock  # the same connection, not a new one
    finally:
        connection.close()


def test_https_refuses_plain_http_and_untrusted_clients(server_factory, certificates) -> None:  # type: ignore[no-untyped-def]
    server = https_server(server_factory, certificates).start()
    # Plain HTTP to the TLS port gets no HTTP answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
    # A client that does not trust the server's CA refuses the connection.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/healthz", timeout=5)
    # TLS 1.1 and older are refused by the server (the client here offers only TLS 1.1).
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(certificates.ca))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated: that is the point
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
    except (ssl.SSLError, ValueError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/healthz", verify=old, timeout=5)
    assert server.alive()


def test_https_with_client_certificates(server_factory, certificates) -> None:  # type: ignore[no-untyped-def]
    server = https_server(server_factory, certificates, TESSERA_HTTP_TLS_CA=str(certificates.ca))
    server.verify = client_context(certificates, certificates.client)
    server.start()
    url = f"{server.base_url}/healthz"
    ok = httpx.get(url, verify=client_context(certificates, certificates.client), timeout=5)
    assert ok.status_code == 200
    for refused in (
        client_context(certificates),  # no client certificate
        client_context(certificates, certificates.stranger),  # another CA's
    ):
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=refused, timeout=5)
    assert server.alive()


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"TESSERA_HTTP_TLS_CERT": "CERT"},
            "needs both TESSERA_HTTP_TLS_CERT and TESSERA_HTTP_TLS_KEY",
        ),
        ({"TESSERA_HTTP_TLS_CERT": "CERT", "TESSERA_HTTP_TLS_KEY": "/nonexistent.key"}, "HTTPS"),
        ({"TESSERA_HTTP_TLS_CERT": "CERT", "TESSERA_HTTP_TLS_KEY": "CA"}, "HTTPS"),
    ],
)
def test_https_misconfiguration_stops_the_server(
    certificates, tmp_path, database_url, env, message
) -> None:  # type: ignore[no-untyped-def]
    paths = {"CERT": str(certificates.server.cert), "CA": str(certificates.ca)}
    environment = {k: paths.get(v, v) for k, v in env.items()}
    full = dict(os.environ)
    full.update(
        environment,
        TESSERA_DATA_DIR=str(tmp_path / "data"),
        TESSERA_DATABASE_URL=database_url,
        TESSERA_DIMSE_PORT="0",
        TESSERA_PORT="0",
    )
    result = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "serve"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: HTTPS" in result.stderr and message in result.stderr


def test_dimse_mutual_tls_with_dcmtk(server_factory, certificates) -> None:  # type: ignore[no-untyped-def]
    server = start_dimse_server(
        server_factory,
        TESSERA_DIMSE_TLS_CERT=str(certificates.server.cert),
        TESSERA_DIMSE_TLS_KEY=str(certificates.server.key),
        TESSERA_DIMSE_TLS_CA=str(certificates.ca),
        TESSERA_DIMSE_ACCEPT_UNKNOWN="true",
    )
    port = str(server.dimse_port)

    def echo(*tls: str) -> subprocess.CompletedProcess:
        return run(
            [
                dcmtk("echoscu"),
                "-to",
                "10",
                *tls,
                "-aet",
                "TLSSCU",
                "-aec",
                SERVER_AET,
                "127.0.0.1",
                port,
            ]
        )

    trust = ["+cf", str(certificates.ca)]
    client = ["+tls", str(certificates.client.key), str(certificates.client.cert)]
    ok = echo(*client, *trust)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # No client certificate, or one of another CA: the handshake fails.
    anonymous = echo("+tla", *trust)
    assert anonymous.returncode != 0
    stranger = echo("+tls", str(certificates.stranger.key), str(certificates.stranger.cert), *trust)
    assert stranger.returncode != 0
    assert server.alive()
