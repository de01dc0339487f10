"""Accounts in SQL: users (with their source lists), custom roles, API keys and login tokens.

Used by request authentication (tessera.auth.authenticate), the admin API and the
`tessera admin` CLI. Every function takes a Connection inside the caller's transaction.
Rows only: how a user becomes a Scope is `tessera.auth.authenticate.scope_for_user`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, delete, select, update

from tessera.auth.roles import BUILTIN_ROLES, ROLE_NAME_RE, parse_permissions
from tessera.auth.secrets import (
    API_KEY_PREFIX,
    SESSION_PREFIX,
    VIEWER_PREFIX,
    hash_password,
    new_token,
    token_hash,
)
from tessera.index.clock import as_utc, iso, utcnow
from tessera.index.database import inserted_pk
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.models import ApiToken, AppUser, CustomRole, Source, UserSource
from tessera.index.sources import source_pks

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")


# --- roles ---------------------------------------------------------------------------------


def role_permissions(conn: Connection, tenant_id: int, role: str) -> frozenset[str] | None:
    if role in BUILTIN_ROLES:
        return BUILTIN_ROLES[role]
    stored = conn.execute(
        select(CustomRole.permissions).where(
            CustomRole.tenant_id == tenant_id, CustomRole.name == role
        )
    ).scalar_one_or_none()
    return None if stored is None else frozenset(stored.split())


def list_roles(conn: Connection, tenant_id: int) -> list[dict]:
    roles = [
        {"name": name, "permissions": sorted(perms), "builtin": True, "description": ""}
        for name, perms in BUILTIN_ROLES.items()
    ]
    for row in conn.execute(
        select(CustomRole).where(CustomRole.tenant_id == tenant_id).order_by(CustomRole.name)
    ):
        roles.append(
            {
                "name": row.name,
                "permissions": sorted(row.permissions.split()),
                "builtin": False,
                "description": row.description,
            }
        )
    return roles


def save_role(
    conn: Connection, tenant_id: int, name: str, permissions: list[str], description: str = ""
) -> bool:
    """Create or replace a custom role; True when it was created."""
    if not ROLE_NAME_RE.match(name):
        raise InvalidValue("a role name is 1-64 letters, digits, '.', '_' or '-'")
    if name in BUILTIN_ROLES:
        raise Conflict(f"{name!r} is a built-in role and cannot be changed")
    perms = " ".join(sorted(parse_permissions(permissions)))
    existing = conn.execute(
        select(CustomRole.id).where(CustomRole.tenant_id == tenant_id, CustomRole.name == name)
    ).scalar_one_or_none()
    if existing is None:
        conn.execute(
            CustomRole.__table__.insert().values(
                tenant_id=tenant_id, name=name, permissions=perms, description=description
            )
        )
        return True
    conn.execute(
        update(CustomRole)
        .where(CustomRole.id == existing)
        .values(permissions=perms, description=description)
    )
    return False


def delete_role(conn: Connection, tenant_id: int, name: str) -> None:
    if name in BUILTIN_ROLES:
        raise Conflict(f"{name!r} is a built-in role")
    in_use = conn.execute(
        select(AppUser.username).where(AppUser.tenant_id == tenant_id, AppUser.role == name)
    ).first()
    if in_use is not None:
        raise Conflict(f"role {name!r} is still given to user {in_use.username!r}")
    result = conn.execute(
        delete(CustomRole).where(CustomRole.tenant_id == tenant_id, CustomRole.name == name)
    )
    if result.rowcount == 0:
        raise NotFound(f"no role {name!r}")


# --- users ---------------------------------------------------------------------------------


@dataclass
class UserInfo:
    id: int
    tenant_id: int
    username: str
    role: str
    is_system_admin: bool
    disabled: bool
    password_hash: str | None = None
    # Names, for the admin API; keys, for the Scope.
    sources: list[str] = field(default_factory=list)
    upload_sources: list[str] = field(default_factory=list)
    source_pks: frozenset[int] = frozenset()
    upload_source_pks: frozenset[int] = frozenset()

    def public(self) -> dict:
        """What the admin API shows (never the password hash)."""
        return {
            "username": self.username,
            "role": self.role,
            "system_admin": self.is_system_admin,
            "disabled": self.disabled,
            "has_password": bool(self.password_hash),
            "sources": self.sources,
            "upload_sources": self.upload_sources,
        }


# A user with their source lists: one row per (user, listed source), in ONE query.
_USER_ROWS: Select = (
    select(
        AppUser.id.label("user_id"),
        AppUser.tenant_id,
        AppUser.username,
        AppUser.password_hash,
        AppUser.role,
        AppUser.is_system_admin,
        AppUser.disabled,
        UserSource.source_id,
        UserSource.kind.label("source_kind"),
        Source.name.label("source_name"),
    )
    .outerjoin(UserSource, UserSource.user_id == AppUser.id)
    .outerjoin(Source, Source.id == UserSource.source_id)
)


def _users_from(rows: Sequence[Row[Any]]) -> list[UserInfo]:
    """Fold the rows of _USER_ROWS (a user's rows adjacent) into users."""
    users: dict[int, UserInfo] = {}
    read: dict[int, set[int]] = {}
    upload: dict[int, set[int]] = {}
    for row in rows:
        user = users.get(row.user_id)
        if user is None:
            user = users[row.user_id] = UserInfo(
                row.user_id,
                row.tenant_id,
                row.username,
                row.role,
                bool(row.is_system_admin),
                bool(row.disabled),
                row.password_hash,
            )
            read[user.id], upload[user.id] = set(), set()
        if row.source_id is None:
            continue
        if row.source_kind == "read":
            user.sources.append(row.source_name)
            read[user.id].add(row.source_id)
        else:
            user.upload_sources.append(row.source_name)
            upload[user.id].add(row.source_id)
    for user in users.values():
        user.sources.sort()
        user.upload_sources.sort()
        user.source_pks = frozenset(read[user.id])
        user.upload_source_pks = frozenset(upload[user.id])
    return list(users.values())


def get_user(conn: Connection, tenant_id: int, username: str) -> UserInfo | None:
    """The user with the password hash and source lists (None: no such user)."""
    rows = conn.execute(
        _USER_ROWS.where(AppUser.tenant_id == tenant_id, AppUser.username == username)
    ).all()
    found = _users_from(rows)
    return found[0] if found else None


def list_users(conn: Connection, tenant_id: int) -> list[UserInfo]:
    rows = conn.execute(
        _USER_ROWS.where(AppUser.tenant_id == tenant_id).order_by(AppUser.username)
    ).all()
    return _users_from(rows)


def _check_role(conn: Connection, tenant_id: int, role: str) -> None:
    if role_permissions(conn, tenant_id, role) is None:
        raise InvalidValue(f"unknown role {role!r}")


def _set_sources(
    conn: Connection, tenant_id: int, user_id: int, kind: str, names: list[str]
) -> None:
    keys = source_pks(conn, tenant_id, names)
    conn.execute(delete(UserSource).where(UserSource.user_id == user_id, UserSource.kind == kind))
    for key in keys.values():
        conn.execute(
            UserSource.__table__.insert().values(user_id=user_id, source_id=key, kind=kind)
        )


def create_user(
    conn: Connection,
    tenant_id: int,
    username: str,
    role: str,
    password: str | None = None,
    sources: list[str] | None = None,
    upload_sources: list[str] | None = None,
    is_system_admin: bool = False,
) -> int:
    if not USERNAME_RE.match(username):
        raise InvalidValue("a user name is 1-64 letters, digits, '.', '_', '@' or '-'")
    _check_role(conn, tenant_id, role)
    if get_user(conn, tenant_id, username) is not None:
        raise Conflict(f"user {username!r} already exists")
    user_id = inserted_pk(
        conn.execute(
            AppUser.__table__.insert().values(
                tenant_id=tenant_id,
                username=username,
                role=role,
                password_hash=hash_password(password) if password else None,
                is_system_admin=is_system_admin,
                disabled=False,
            )
        )
    )
    _set_sources(conn, tenant_id, user_id, "read", sources or [])
    _set_sources(conn, tenant_id, user_id, "upload", upload_sources or [])
    return user_id


def update_user(
    conn: Connection,
    tenant_id: int,
    username: str,
    changes: dict,
    keep_token_id: int | None = None,
) -> UserInfo:
    """Apply `changes` (role, password, disabled, sources, upload_sources). A changed
    password or a disabled user ends the user's login sessions and viewer tokens, except
    `keep_token_id` (the session of a user changing their own password)."""
    user = get_user(conn, tenant_id, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    values: dict = {}
    if "role" in changes:
        _check_role(conn, tenant_id, changes["role"])
        values["role"] = changes["role"]
    if "password" in changes:
        values["password_hash"] = (
            hash_password(changes["password"]) if changes["password"] else None
        )
    if "disabled" in changes:
        values["disabled"] = bool(changes["disabled"])
    if values:
        conn.execute(update(AppUser).where(AppUser.id == user.id).values(**values))
    if "sources" in changes:
        _set_sources(conn, tenant_id, user.id, "read", list(changes["sources"] or []))
    if "upload_sources" in changes:
        _set_sources(conn, tenant_id, user.id, "upload", list(changes["upload_sources"] or []))
    if values.get("disabled") or "password_hash" in values:
        # A disabled user or a changed password ends the user's login sessions.
        ending = update(ApiToken).where(
            ApiToken.user_id == user.id,
            ApiToken.kind.in_(LOGIN_KINDS),
            ApiToken.revoked_at.is_(None),
        )
        if keep_token_id is not None and not values.get("disabled"):
            ending = ending.where(ApiToken.id != keep_token_id)
        conn.execute(ending.values(revoked_at=utcnow()))
    return get_user(conn, tenant_id, username)  # type: ignore[return-value]


def delete_user(conn: Connection, tenant_id: int, username: str) -> None:
    user = get_user(conn, tenant_id, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    conn.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    conn.execute(delete(UserSource).where(UserSource.user_id == user.id))
    conn.execute(delete(AppUser).where(AppUser.id == user.id))


# --- tokens --------------------------------------------------------------------------------


# Tokens that a login hands out (a session, and the short-lived read-only viewer tokens
# minted from it): ended by logout, a password change or disabling the user.
LOGIN_KINDS = ("session", "viewer")
_PREFIXES = {"api_key": API_KEY_PREFIX, "session": SESSION_PREFIX, "viewer": VIEWER_PREFIX}


def issue_token(
    conn: Connection,
    tenant_id: int,
    user_id: int,
    kind: str,
    name: str = "",
    lifetime: timedelta | None = None,
) -> tuple[int, str, datetime | None]:
    """A new API key (kind 'api_key'), login session ('session') or read-only viewer token
    ('viewer'). Returns (id, the token, expiry); the token itself is shown once and never
    stored."""
    token = new_token(_PREFIXES[kind])
    expires_at = utcnow() + lifetime if lifetime else None
    token_id = inserted_pk(
        conn.execute(
            ApiToken.__table__.insert().values(
                tenant_id=tenant_id,
                user_id=user_id,
                kind=kind,
                name=name,
                token_hash=token_hash(token),
                prefix=token[:10],
                expires_at=expires_at,
                created_at=utcnow(),
            )
        )
    )
    return token_id, token, expires_at


def list_api_keys(conn: Connection, tenant_id: int) -> list[dict]:
    rows = conn.execute(
        select(ApiToken, AppUser.username)
        .join(AppUser, AppUser.id == ApiToken.user_id)
        .where(ApiToken.tenant_id == tenant_id, ApiToken.kind == "api_key")
        .order_by(ApiToken.id)
    )
    return [
        {
            "id": r.id,
            "name": r.name,
            "user": r.username,
            "prefix": r.prefix,
            "created_at": iso(r.created_at),
            "expires_at": iso(r.expires_at),
            "revoked_at": iso(r.revoked_at),
        }
        for r in rows
    ]


def api_key_owner(conn: Connection, tenant_id: int, token_id: int) -> str | None:
    """The user name an API key of the tenant belongs to (None: no such key)."""
    return conn.execute(
        select(AppUser.username)
        .join(ApiToken, ApiToken.user_id == AppUser.id)
        .where(
            ApiToken.id == token_id,
            ApiToken.tenant_id == tenant_id,
            ApiToken.kind == "api_key",
        )
    ).scalar_one_or_none()


def revoke_token(conn: Connection, tenant_id: int, token_id: int, kind: str = "api_key") -> None:
    result = conn.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            ApiToken.tenant_id == tenant_id,
            ApiToken.kind == kind,
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    if result.rowcount == 0:
        raise NotFound(f"no active API key {token_id}")


def viewer_token_name(session_token_id: int) -> str:
    """The name of a viewer token minted from a login session, so logout ends it too."""
    return f"session {session_token_id}"


def revoke_viewer_tokens(conn: Connection, tenant_id: int, session_token_id: int) -> None:
    """End the viewer tokens minted from one login session (at its logout)."""
    conn.execute(
        update(ApiToken)
        .where(
            ApiToken.tenant_id == tenant_id,
            ApiToken.kind == "viewer",
            ApiToken.name == viewer_token_name(session_token_id),
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


@dataclass(frozen=True)
class TokenHolder:
    token_id: int
    kind: str
    name: str
    tenant_id: int
    user: UserInfo


def live_token_holder(conn: Connection, token: str) -> TokenHolder | None:
    """The holder of a live (not revoked, not expired) token, in any tenant, with the user's
    source lists, in ONE query (this runs on every request, frames included)."""
    return _live_holder(conn, ApiToken.token_hash == token_hash(token))


def live_token_holder_by_id(conn: Connection, token_id: int) -> TokenHolder | None:
    """The same by the token's id: whether a token that opened a long-lived connection (a
    change stream, a UPS channel) is still live, and what its user may now see."""
    return _live_holder(conn, ApiToken.id == token_id)


def _live_holder(conn: Connection, which: ColumnElement[bool]) -> TokenHolder | None:
    rows = conn.execute(
        _USER_ROWS.add_columns(
            ApiToken.id.label("token_id"),
            ApiToken.kind,
            ApiToken.name,
            ApiToken.expires_at,
            ApiToken.revoked_at,
        )
        .join(ApiToken, ApiToken.user_id == AppUser.id)
        .where(which)
    ).all()
    if not rows:
        return None
    first = rows[0]
    if first.revoked_at is not None:
        return None
    if first.expires_at is not None and as_utc(first.expires_at) <= utcnow():
        return None
    user = _users_from(rows)[0]
    return TokenHolder(first.token_id, first.kind, first.name, first.tenant_id, user)
