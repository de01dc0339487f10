"""HTTPS for `tessera serve`: the HTTP listener speaks TLS when a certificate and key are set
(TESSERA_HTTP_TLS_CERT / _KEY; with TESSERA_HTTP_TLS_CA, clients must present a certificate
that CA signed), with the DIMSE listener's defaults (tessera.tls). docs/running.md."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from tessera.config import Settings, load_settings
from tessera.tls import server_context


def http_tls_context(settings: Settings) -> ssl.SSLContext | None:
    return server_context(
        settings.http_tls_cert, settings.http_tls_key, settings.http_tls_ca, "TESSERA_HTTP_TLS"
    )


def context_factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's `ssl_context_factory`: runs in every worker process, which rebuilds the
    settings from its TESSERA_* environment (exported by `tessera serve`)."""
    context = http_tls_context(load_settings())
    if context is None:  # serve() only passes the factory when TLS is configured
        raise RuntimeError("TESSERA_HTTP_TLS_CERT and TESSERA_HTTP_TLS_KEY are not set")
    return context


def uvicorn_tls_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run: none for plain HTTP; with TLS, the context factory
    and, when configured, the Strict-Transport-Security header on every response. Checks the
    files now (a wrong path or key stops the server before it listens)."""
    if http_tls_context(settings) is None:
        return {}
    options: dict[str, Any] = {"ssl_context_factory": context_factory}
    if settings.http_hsts_seconds > 0:
        options["headers"] = [
            ("strict-transport-security", f"max-age={settings.http_hsts_seconds}")
        ]
    return options
