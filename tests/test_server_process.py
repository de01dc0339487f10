"""The test servers' fixture: a port taken between free_port() and the server's bind."""

from __future__ import annotations

import socket

import httpx

from tests.conftest import ServerProcess, free_port


def test_a_first_start_whose_port_was_taken_moves_to_another(tmp_path) -> None:  # type: ignore[no-untyped-def]
    taken = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        server = ServerProcess(
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{tmp_path / 'index.db'}",
            port=taken,
        )
        try:
            server.start()
            assert server.port != taken
            assert httpx.get(f"{server.base_url}/healthz").status_code == 200
        finally:
            server.stop()
