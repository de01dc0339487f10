"""Built-in roles as named sets of permissions; custom roles are stored per tenant."""

from __future__ import annotations

import re

from tessera.auth import permissions as p

BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset({p.READ, p.UPLOAD, p.ORDERS, p.REPORT_WRITE, p.REPORT_SIGN, p.ADMIN}),
    "technologist": frozenset({p.READ, p.UPLOAD, p.ORDERS, p.REPORT_WRITE}),
    "referring_physician": frozenset({p.READ}),
    "reading_physician": frozenset({p.READ, p.REPORT_WRITE, p.REPORT_SIGN}),
}

ROLE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def parse_permissions(names: list[str] | str) -> frozenset[str]:
    """Validate a custom role's permission list (SYSTEM cannot be granted by a role)."""
    if isinstance(names, str):
        names = names.split()
    unknown = sorted(set(names) - p.ALL)
    if unknown:
        raise ValueError(
            f"unknown permission(s) {', '.join(unknown)}; known: {', '.join(sorted(p.ALL))}"
        )
    return frozenset(names)
