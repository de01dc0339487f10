"""Per-request context: the shared Archive and the caller's Scope."""

from __future__ import annotations

from starlette.requests import Request

from tessera.archive import Archive
from tessera.auth.scope import Scope, full_scope


def archive_of(request: Request) -> Archive:
    return request.app.state.archive


async def scope_of(request: Request) -> Scope:
    """The caller's Scope. Until accounts exist every caller acts in the default tenant
    (the loopback quick start); the accounts issue replaces this with real credentials."""
    archive = archive_of(request)
    return full_scope(archive.default_tenant.id)
