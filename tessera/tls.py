"""Server-side TLS, one set of defaults for every listener (HTTP and DIMSE): TLS 1.2 at
least, the certificate and key from PEM files, and with a CA file, mutual TLS (peers must
present a certificate that CA signed)."""

from __future__ import annotations

import ssl


def server_context(cert: str, key: str, ca: str, setting: str) -> ssl.SSLContext | None:
    """None when neither the certificate nor the key is set; `setting` names the settings
    (e.g. "TESSERA_HTTP_TLS") in the error for a half-configured listener."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError(f"TLS needs both {setting}_CERT and {setting}_KEY")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
