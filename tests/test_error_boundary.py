"""An unhandled error answers 500 and the kept-alive connection stays usable (real uvicorn,
real httpx connection). Without the boundary, Starlette re-raises after its 500 and uvicorn
closes the connection: the client's next request fails or has to reconnect."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tessera.dicomweb.error_boundary import ErrorBoundary
from tests.conftest import free_port


async def boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def fine(request: Request) -> Response:
    return PlainTextResponse("ok")


async def broken_stream(request: Request) -> Response:
    async def chunks() -> Iterator[bytes]:  # type: ignore[misc]
        yield b"first"
        raise RuntimeError("a bug after the status line")

    return StreamingResponse(chunks())


def _serve(with_boundary: bool) -> Iterator[str]:
    app = Starlette(
        routes=[Route("/boom", boom), Route("/ok", fine), Route("/stream", broken_stream)],
        middleware=[Middleware(ErrorBoundary)] if with_boundary else [],
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def guarded() -> Iterator[str]:
    yield from _serve(with_boundary=True)


@pytest.fixture
def unguarded() -> Iterator[str]:
    yield from _serve(with_boundary=False)


def _connections_used(base_url: str, paths: list[str]) -> tuple[list[int], int]:
    sockets = set()
    statuses = []
    with httpx.Client(timeout=10) as client:
        for path in paths:
            try:
                response = client.get(base_url + path)
            except httpx.HTTPError:
                statuses.append(0)
                continue
            statuses.append(response.status_code)
            sockets.add(client_address(response))
    return statuses, len(sockets)


def test_a_500_keeps_the_connection(guarded: str) -> None:
    statuses, connections = _connections_used(guarded, ["/ok", "/boom", "/ok", "/boom", "/ok"])
    assert statuses == [200, 500, 200, 500, 200]
    assert connections == 1


def test_without_the_boundary_the_connection_closes(unguarded: str) -> None:
    """The behaviour the boundary exists for (so the test above can fail)."""
    statuses, connections = _connections_used(unguarded, ["/ok", "/boom", "/ok"])
    assert statuses[:2] == [200, 500]
    assert connections > 1 or statuses[2] == 0


def test_an_error_after_the_status_line_still_closes(guarded: str) -> None:
    with httpx.Client(timeout=10) as client:
        with pytest.raises(httpx.HTTPError):
            client.get(guarded + "/stream")
        assert client.get(guarded + "/ok").status_code == 200


def client_address(response: httpx.Response) -> tuple | str:
    """The client's address and port of the connection that carried `response` (a new
    connection has another port); 'closed' once the server has closed it."""
    try:
        return response.extensions["network_stream"].get_extra_info("client_addr")
    except OSError:
        return f"closed {id(response)}"
