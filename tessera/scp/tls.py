"""TLS for the DIMSE listener (PS3.15 B.1, the Basic TLS Secure Transport profile)."""

from __future__ import annotations

import ssl

from tessera.config import Settings
from tessera.tls import server_context


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """None when TLS is off; otherwise a server context with the configured certificate.

    With a CA file, peers must present a certificate that CA signed (mutual TLS).
    """
    return server_context(
        settings.dimse_tls_cert,
        settings.dimse_tls_key,
        settings.dimse_tls_ca,
        "TESSERA_DIMSE_TLS",
    )
