"""Credentials -> (Scope, Identity) for one tenant.

Accepted: `Authorization: Bearer <API key | login token | OIDC JWT>`, `Authorization: Basic`,
or nothing when anonymous access is allowed (loopback quick start). Every failure is the
same 401 whatever went wrong (unknown user, wrong password, revoked key, key of another
tenant), so a caller learns nothing from the difference.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import jwt
from sqlalchemy import Connection

from tessera.auth import permissions
from tessera.auth.oidc import OidcValidator, looks_like_jwt
from tessera.auth.secrets import verify_password
from tessera.index import accounts
from tessera.index.database import Database
from tessera.index.tenancy import TenantInfo
from tessera.scope import Scope, full_scope

log = logging.getLogger(__name__)

CHALLENGE = 'Bearer realm="tessera", Basic realm="tessera", charset="UTF-8"'


class AuthenticationFailed(Exception):
    """401: no usable credentials. `attempted` names who tried (never a secret)."""

    def __init__(self, detail: str, attempted: str = "anonymous") -> None:
        super().__init__(detail)
        self.detail = detail
        self.attempted = attempted


@dataclass(frozen=True)
class Identity:
    tenant: TenantInfo
    # anonymous, basic, session, viewer, api_key, oidc
    method: str
    username: str | None = None
    token_id: int | None = None
    # Basic: the stored password hash the caller's password matched, so a long-lived
    # connection can tell that the password changed since (`current_scope`).
    password_hash: str | None = field(default=None, repr=False)
    # OIDC: the token's `exp` (seconds since the epoch), for the same re-check.
    expires_at: float | None = None


INVALID = "invalid or expired credentials"


def scope_for_user(conn: Connection, user: accounts.UserInfo, principal: str) -> Scope:
    """The ONE way a user becomes a Scope: the role's permissions (plus `system` for the
    system administrator), the user's read and upload source lists (none listed: all)."""
    granted = accounts.role_permissions(conn, user.tenant_id, user.role) or frozenset()
    if user.is_system_admin:
        granted = granted | {permissions.SYSTEM}
    return Scope(
        tenant_id=user.tenant_id,
        source_pks=user.source_pks or None,
        upload_source_pks=user.upload_source_pks or None,
        permissions=frozenset(granted),
        principal=principal,
    )


def authenticate(
    database: Database,
    tenant: TenantInfo,
    authorization: str | None,
    anonymous_allowed: bool,
    oidc: OidcValidator | None = None,
) -> tuple[Scope, Identity]:
    if not authorization:
        if anonymous_allowed:
            return full_scope(tenant.id, "anonymous"), Identity(tenant, "anonymous")
        raise AuthenticationFailed("authentication required")
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic":
        return _basic(database, tenant, value)
    if scheme == "bearer" and value:
        if oidc is not None and looks_like_jwt(value):
            return _oidc(database, tenant, oidc, value)
        return _bearer(database, tenant, value)
    raise AuthenticationFailed("unsupported Authorization scheme (use Bearer or Basic)")


def _basic(database: Database, tenant: TenantInfo, value: str) -> tuple[Scope, Identity]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationFailed("malformed Basic credentials") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise AuthenticationFailed("malformed Basic credentials")
    with database.read() as conn:  # user and Scope read first; the slow hash check after
        user = accounts.get_user(conn, tenant.id, username)
        scope = None if user is None else scope_for_user(conn, user, user.username)
    if not verify_password(user.password_hash if user else None, password):
        raise AuthenticationFailed(INVALID, attempted=username[:64])
    assert user is not None and scope is not None
    if user.disabled:
        raise AuthenticationFailed(INVALID, attempted=username[:64])
    return scope, Identity(tenant, "basic", user.username, password_hash=user.password_hash)


def _bearer(database: Database, tenant: TenantInfo, token: str) -> tuple[Scope, Identity]:
    with database.engine.connect() as conn:
        holder = accounts.live_token_holder(conn, token)
        # A token of another tenant is exactly as unknown here as a made-up one.
        if holder is None or holder.tenant_id != tenant.id or holder.user.disabled:
            raise AuthenticationFailed(INVALID, attempted="bearer token")
        principal = holder.user.username
        if holder.kind == "api_key":
            principal = f"{principal} (key {holder.token_id})"
        elif holder.kind == "viewer":
            principal = f"{principal} (viewer)"
        scope = scope_for_user(conn, holder.user, principal)
    if holder.kind == "viewer":
        scope = viewer_scope(scope)
    return scope, Identity(tenant, holder.kind, holder.user.username, holder.token_id)


def current_scope(database: Database, identity: Identity, opened: Scope) -> Scope | None:
    """What the credentials that opened a long-lived connection (a change stream, a UPS
    notification channel) allow now, or None once they would no longer authenticate: the
    token revoked or expired (logout, a revoked API key, a password change, which ends the
    user's other sessions), the user disabled or removed, a Basic password changed, an OIDC token past its `exp`. A role
    or source list changed since is applied (the Scope is rebuilt). One indexed look-up,
    never a password hash check, so it is cheap to repeat every few seconds."""
    if identity.method == "anonymous":
        return opened
    if identity.expires_at is not None and time.time() >= identity.expires_at:
        return None
    tenant_id = identity.tenant.id
    with database.read() as conn:
        if identity.token_id is not None:
            holder = accounts.live_token_holder_by_id(conn, identity.token_id)
            if holder is None or holder.tenant_id != tenant_id or holder.user.disabled:
                return None
            scope = scope_for_user(conn, holder.user, opened.principal)
            return viewer_scope(scope) if holder.kind == "viewer" else scope
        user = accounts.get_user(conn, tenant_id, identity.username or "")
        if user is None or user.disabled:
            return None
        if identity.method == "basic" and user.password_hash != identity.password_hash:
            return None
        return scope_for_user(conn, user, opened.principal)


def viewer_scope(scope: Scope) -> Scope:
    """What a viewer token may do: read (search and retrieve) what its user may read, the
    same tenant and source lock; nothing else (no upload, no admin, no reports)."""
    kept = frozenset({permissions.READ}) if scope.can(permissions.READ) else frozenset()
    return replace(scope, permissions=kept, upload_source_pks=frozenset())


def _oidc(
    database: Database, tenant: TenantInfo, oidc: OidcValidator, token: str
) -> tuple[Scope, Identity]:
    try:
        claims = oidc.claims(token)
    except (jwt.PyJWTError, OSError) as exc:
        log.info("OIDC token refused", extra={"reason": exc.__class__.__name__})
        raise AuthenticationFailed(INVALID, attempted="oidc token") from exc
    username = str(claims.get(oidc.username_claim) or "")
    # A token names its tenant; without the claim it is good for the default tenant only.
    token_tenant = claims.get(oidc.tenant_claim)
    if token_tenant is None:
        from tessera.index.models import DEFAULT_TENANT

        token_tenant = DEFAULT_TENANT
    if token_tenant != tenant.name or not username:
        raise AuthenticationFailed(INVALID, attempted=f"oidc:{username[:64]}")
    with database.read() as conn:
        user = accounts.get_user(conn, tenant.id, username)
        if user is None or user.disabled:
            raise AuthenticationFailed(INVALID, attempted=f"oidc:{username[:64]}")
        scope = scope_for_user(conn, user, f"{username} (oidc)")
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) else None
    return scope, Identity(tenant, "oidc", username, expires_at=expires_at)


def login(
    database: Database, tenant: TenantInfo, username: str, password: str, lifetime: timedelta
) -> tuple[str, datetime]:
    """Check a password and issue a session token; (token, expires_at)."""
    with database.write() as conn:
        user = accounts.get_user(conn, tenant.id, username)
        if not verify_password(user.password_hash if user else None, password) or (
            user is not None and user.disabled
        ):
            raise AuthenticationFailed(INVALID, attempted=username[:64])
        assert user is not None
        _, token, expires_at = accounts.issue_token(
            conn, tenant.id, user.id, "session", "login", lifetime
        )
    assert expires_at is not None  # a session always has a lifetime
    return token, expires_at
