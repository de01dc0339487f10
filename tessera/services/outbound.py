"""Where Tessera may connect on a tenant's behalf (webhook URLs, DICOMweb destinations).

A URL is refused when its host resolves to a loopback, private, link-local, reserved or
multicast address, unless the system setting `outbound_allow_private` (TESSERA_OUTBOUND_ALLOW_PRIVATE)
allows them: otherwise a tenant could make the server probe its own network (SSRF).
The check is made when the URL is saved AND at every connection, and the connection goes
to the address that was checked (`pinned_request`), so DNS answers that change between the
two (rebinding) cannot slip past it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


class TargetRefused(ValueError):
    """The URL is malformed or points where the server may not connect."""


@dataclass(frozen=True)
class Target:
    url: str  # the URL with the checked address in place of the host name
    host_header: str
    sni_hostname: str | None


def parse_http_url(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not accepted (use a header)")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if allow_private:
        return not ip.is_multicast and not ip.is_unspecified
    return ip.is_global and not ip.is_multicast


def resolve_checked(host: str, port: int, allow_private: bool) -> str:
    """One address of `host` that the server may connect to (every address is checked)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {host!r} does not resolve ({exc})") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    for address in addresses:
        if not _allowed(address, allow_private):
            raise TargetRefused(
                f"the host {host!r} resolves to {address}, a loopback/private/reserved "
                "address; an administrator must allow those (outbound_allow_private)"
            )
    return addresses[0]


def check_url(url: str, allow_private: bool) -> None:
    """Raise TargetRefused unless the server may send to `url` (used when saving it)."""
    _, host, port = parse_http_url(url)
    resolve_checked(host, port, allow_private)


def pinned_request(url: str, allow_private: bool) -> Target:
    """The URL rewritten to the checked address, with the Host header (and TLS server name)
    of the original host."""
    scheme, host, port = parse_http_url(url)
    address = resolve_checked(host, port, allow_private)
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    pinned = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return Target(pinned, host_header, host if scheme == "https" else None)
