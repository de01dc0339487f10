"""Built-in roles as named sets of permissions; custom roles are stored per tenant."""

from __future__ import annotations

import re

from tessera.auth import permissions
from tessera.index.errors import InvalidValue

BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            permissions.READ,
            permissions.UPLOAD,
            permissions.ORDERS,
            permissions.REPORT_WRITE,
            permissions.REPORT_SIGN,
            permissions.ADMIN,
        }
    ),
    "technologist": frozenset({permissions.READ, permissions.UPLOAD, permissions.ORDERS}),
    "referring_physician": frozenset({permissions.READ}),
    "reading_physician": frozenset(
        {permissions.READ, permissions.REPORT_WRITE, permissions.REPORT_SIGN}
    ),
}

ROLE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def parse_permissions(names: list[str] | str) -> frozenset[str]:
    """Validate a custom role's permission list (SYSTEM cannot be granted by a role)."""
    if isinstance(names, str):
        names = names.split()
    unknown = sorted(set(names) - permissions.ALL)
    if unknown:
        raise InvalidValue(
            f"unknown permission(s) {', '.join(unknown)}; known: {', '.join(sorted(permissions.ALL))}"
        )
    return frozenset(names)
