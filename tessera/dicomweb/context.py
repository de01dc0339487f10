"""Per-request context: the shared Archive, the caller's tenant and Scope.

The Scope is produced before routing by `tessera.dicomweb.access.AccessMiddleware` from the
request's credentials (see docs/accounts.md); handlers only read it here.
"""

from __future__ import annotations

from starlette.requests import Request

from tessera.archive import Archive
from tessera.auth.authenticate import AuthenticationFailed, Identity
from tessera.dicomweb.access import IDENTITY_KEY, SCOPE_KEY, TENANT_KEY
from tessera.index.tenancy import TenantInfo
from tessera.scope import Scope


def archive_of(request: Request) -> Archive:
    return request.app.state.archive


async def scope_of(request: Request) -> Scope:
    """The caller's Scope (tenant, visible and upload sources, permissions). The route's
    permission was checked at the gate (tessera.dicomweb.gate) before the handler ran."""
    scope = request.scope.get(SCOPE_KEY)
    if scope is None:
        # Only public paths skip authentication; a handler there must not ask for a Scope.
        raise AuthenticationFailed("authentication required")
    return scope


def identity_of(request: Request) -> Identity | None:
    """How the caller authenticated (user name, method, token), None on public paths."""
    return request.scope.get(IDENTITY_KEY)


def tenant_of(request: Request) -> TenantInfo:
    """The tenant whose root the request addressed (`/t/{tenant}/...` or the default)."""
    tenant = request.scope.get(TENANT_KEY)
    return tenant if tenant is not None else archive_of(request).default_tenant
