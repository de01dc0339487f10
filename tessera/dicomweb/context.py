"""Per-request context: the shared Archive, the caller's tenant and Scope.

The Scope is produced before routing by `tessera.dicomweb.access.AccessMiddleware` from the
request's credentials (see docs/accounts.md); handlers only read it here.
"""

from __future__ import annotations

from starlette.requests import Request

from tessera.archive import Archive
from tessera.auth.authenticate import AuthenticationFailed, Identity
from tessera.auth.permissions import PermissionDenied
from tessera.auth.scope import Scope
from tessera.index.tenancy import TenantInfo


def archive_of(request: Request) -> Archive:
    return request.app.state.archive


async def scope_of(request: Request, permission: str | None = None) -> Scope:
    """The caller's Scope (tenant, visible and upload sources, permissions). With
    `permission`, raises PermissionDenied (answered 403) when the caller lacks it."""
    scope = request.scope.get("tessera.scope")
    if scope is None:
        # Only public paths skip authentication; a handler there must not ask for a Scope.
        raise AuthenticationFailed("authentication required")
    if permission is not None and not scope.can(permission):
        raise PermissionDenied(permission)
    return scope


def identity_of(request: Request) -> Identity | None:
    """How the caller authenticated (user name, method, token), None on public paths."""
    return request.scope.get("tessera.identity")


def tenant_of(request: Request) -> TenantInfo:
    """The tenant whose root the request addressed (`/t/{tenant}/...` or the default)."""
    tenant = request.scope.get("tessera.tenant")
    return tenant if tenant is not None else archive_of(request).default_tenant
