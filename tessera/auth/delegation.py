"""An administrator hands out only what they hold.

Every admin change that creates, changes, removes or mints credentials for something that
carries rights (a user, a custom role, a DIMSE peer, an API key) checks here that those
rights, before and after the change, lie within the caller's own: no permission the caller
lacks (the system flag counts as the `system` permission) and no source the caller cannot
see or upload to. Otherwise a tenant admin could take over a more powerful account (mint it a
key, set its password) or widen their own reach through a user or peer they create.
"""

from __future__ import annotations

from tessera.auth import permissions
from tessera.auth.permissions import PermissionDenied
from tessera.scope import Scope


class BeyondOwnRights(PermissionDenied):
    """The target holds (or would hold) rights the acting administrator lacks: 403."""

    def __init__(self, detail: str) -> None:
        Exception.__init__(self, detail)
        self.permission = permissions.ADMIN


def _within(caller: frozenset[int] | None, target: frozenset[int] | None) -> bool:
    """None means every source of the tenant."""
    if caller is None:
        return True
    return target is not None and target <= caller


def require_permissions_within(caller: Scope, granted: frozenset[str], what: str) -> None:
    """Raise BeyondOwnRights unless the caller holds every permission in `granted`."""
    if caller.can(permissions.SYSTEM):
        return
    missing = sorted(perm for perm in granted if not caller.can(perm))
    if missing:
        raise BeyondOwnRights(f"{what} holds permissions you do not have ({', '.join(missing)})")


def require_within(caller: Scope, target: Scope, what: str) -> None:
    """Raise BeyondOwnRights unless `target`'s rights are a subset of `caller`'s."""
    if caller.can(permissions.SYSTEM):
        return
    require_permissions_within(caller, target.permissions, what)
    if not _within(caller.source_pks, target.source_pks):
        raise BeyondOwnRights(f"{what} may see sources you may not see")
    if not _within(caller.upload_source_pks, target.upload_source_pks):
        raise BeyondOwnRights(f"{what} may upload to sources you may not upload to")
