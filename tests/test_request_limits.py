"""Request limits against a real `tessera serve`: header size (431; absurd heads close the
connection), URL length (414), number of query parameters (400); configurable."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # HTTP only


@pytest.fixture
def server(server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    return server_factory(env_extra={"TESSERA_WORKERS": "1"}).start()


def _studies(server: ServerProcess, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(f"{server.dicomweb}/studies", timeout=30, **kwargs)


def test_headers_over_the_limit_get_431_and_a_closed_connection(server: ServerProcess) -> None:
    assert _studies(server, headers={"X-Padding": "a" * 20_000}).status_code == 200
    response = _studies(server, headers={"X-Padding": "a" * 70_000})
    assert response.status_code == 431
    assert response.headers["connection"] == "close"
    detail = response.json()["detail"]
    assert "TESSERA_MAX_HEADER_BYTES" in detail and "32768" in detail
    # Many small headers count together.
    many = {f"X-H{i}": "b" * 100 for i in range(400)}
    assert _studies(server, headers=many).status_code == 431
    assert _studies(server).status_code == 200


def _raw_head(server: ServerProcess, header_bytes: int) -> bytes:
    """Send a request head with `header_bytes` of headers; what the server answered."""
    head = b"GET /dicomweb/studies HTTP/1.1\r\nHost: x\r\n"
    line = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for _ in range(header_bytes // len(line)):
                sock.sendall(line)
            sock.sendall(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: what we test for
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def test_an_absurd_header_is_cut_off(server: ServerProcess) -> None:
    # 1 MB and 20 MB heads: cut off by the protocol (its own 431, then closed; or reset
    # while we still send), never read whole and handed to the application.
    for size in (1_000_000, 20_000_000):
        answer = _raw_head(server, size)
        assert answer == b"" or (
            answer.startswith(b"HTTP/1.1 431 ") and b"(connection)" in answer
        ), answer[:300]
    assert server.alive()
    assert _studies(server).status_code == 200


def test_long_url_gets_414_and_many_parameters_400(server: ServerProcess) -> None:
    response = _studies(server, params={"PatientName": "A" * 17000})
    assert response.status_code == 414
    assert "TESSERA_MAX_URL_BYTES" in response.json()["detail"]
    params = [("includefield", f"0010{i:04X}") for i in range(201)]
    response = _studies(server, params=params)
    assert response.status_code == 400
    assert "201 parameters" in response.json()["detail"]
    assert "TESSERA_MAX_QUERY_PARAMETERS" in response.json()["detail"]
    assert _studies(server, params=params[:150]).status_code == 200
    # Unauthenticated and unknown paths are limited too (before access control and routing).
    assert httpx.get(f"{server.base_url}/nowhere/" + "x" * 17000, timeout=30).status_code == 414
    # A WADO-RS frame list of 2,000 frames (about 9 KB of URL) is a request, not an abuse.
    frames = ",".join(str(n) for n in range(1, 2001))
    url = f"{server.dicomweb}/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/frames/{frames}"
    assert httpx.get(url, timeout=30).status_code == 404


def test_limits_are_configurable(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(
        env_extra={
            "TESSERA_WORKERS": "1",
            "TESSERA_MAX_HEADER_BYTES": "2000",
            "TESSERA_MAX_URL_BYTES": "100",
            "TESSERA_MAX_QUERY_PARAMETERS": "2",
        }
    ).start()
    assert _studies(server, headers={"X-Padding": "a" * 3000}).status_code == 431
    assert _studies(server, params={"PatientName": "A" * 120}).status_code == 414
    assert _studies(server, params={"a": "1", "b": "2", "c": "3"}).status_code == 400
    assert _studies(server, params={"limit": "1", "offset": "0"}).status_code == 200
    # 4 x 2000 bytes: the head is cut off before it is complete.
    answer = _raw_head(server, 50_000)
    assert answer == b"" or b"(connection)" in answer, answer[:300]
