"""TLS for the DIMSE listener (PS3.15 B.1, the Basic TLS Secure Transport profile)."""

from __future__ import annotations

import ssl

from tessera.config import Settings


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """None when TLS is off; otherwise a server context with the configured certificate.

    With a CA file, peers must present a certificate that CA signed (mutual TLS).
    """
    if not settings.dimse_tls_cert and not settings.dimse_tls_key:
        return None
    if not (settings.dimse_tls_cert and settings.dimse_tls_key):
        raise ValueError("DIMSE TLS needs both TESSERA_DIMSE_TLS_CERT and TESSERA_DIMSE_TLS_KEY")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.dimse_tls_cert, settings.dimse_tls_key)
    if settings.dimse_tls_ca:
        context.load_verify_locations(settings.dimse_tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
