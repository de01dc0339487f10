"""`tessera serve` stops on SIGTERM (what Ctrl-C, systemd and container runtimes send), with
its DIMSE listener running: no thread may keep the process alive after HTTP has stopped."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.conftest import free_port


# One HTTP process (uvicorn in the supervisor, which re-raises the signal after its shutdown)
# and several (uvicorn's process manager).
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_http_and_dimse(server_factory, workers: str) -> None:  # type: ignore[no-untyped-def]
    dimse_port = free_port()
    env = {"TESSERA_DIMSE_PORT": str(dimse_port), "TESSERA_WORKERS": workers}
    server = server_factory(env_extra=env).start()
    with socket.create_connection(("127.0.0.1", dimse_port), timeout=5):
        pass  # the listener is up
    server.process.send_signal(signal.SIGTERM)  # the parent only, as a service manager does
    assert server.process.wait(20) == 0, server.log()[-2000:]
    assert "DIMSE listener stopped" in server.log()
