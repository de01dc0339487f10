"""The account directory in SQL: tenants, users, roles, source lists, tokens; and how a user
becomes a Scope. Used by request authentication, the admin API and the `tessera admin` CLI.

Every function takes a Connection inside the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import overload

from sqlalchemy import Connection, bindparam, delete, select, update

from tessera.auth import permissions
from tessera.auth.roles import BUILTIN_ROLES, ROLE_NAME_RE, parse_permissions
from tessera.auth.scope import Scope
from tessera.auth.secrets import hash_password, new_token, token_hash
from tessera.index.accounts import ApiToken, AppUser, CustomRole, UserSource
from tessera.index.database import inserted_pk
from tessera.index.models import DEFAULT_SOURCE, Source, Tenant
from tessera.index.tenancy import TenantInfo, tenant_by_name

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
# Lower-case, URL-safe, and never a word the URL scheme uses (/t/{tenant}/dicomweb).
TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
RESERVED_TENANT_NAMES = frozenset({"dicomweb", "api", "t", "healthz", "wado"})


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


@overload
def utc(moment: datetime) -> datetime: ...
@overload
def utc(moment: None) -> None: ...
def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


# --- tenants -------------------------------------------------------------------------------


def create_tenant(conn: Connection, name: str) -> TenantInfo:
    if not TENANT_NAME_RE.match(name) or name in RESERVED_TENANT_NAMES:
        raise ValueError(
            "a tenant name is 1-64 lower-case letters, digits, '_' or '-' "
            f"(and not one of {', '.join(sorted(RESERVED_TENANT_NAMES))})"
        )
    if tenant_by_name(conn, name) is not None:
        raise Conflict(f"tenant {name!r} already exists")
    tenant_id = inserted_pk(
        conn.execute(Tenant.__table__.insert().values(name=name, duplicate_policy="reject"))
    )
    conn.execute(
        Source.__table__.insert().values(
            tenant_id=tenant_id, name=DEFAULT_SOURCE, description="Uploads with no source given"
        )
    )
    return TenantInfo(tenant_id, name, "reject")


def list_tenants(conn: Connection) -> list[TenantInfo]:
    rows = conn.execute(
        select(Tenant.id, Tenant.name, Tenant.duplicate_policy).order_by(Tenant.name)
    )
    return [TenantInfo(r.id, r.name, r.duplicate_policy) for r in rows]


# --- sources -------------------------------------------------------------------------------


def source_pks(conn: Connection, tenant_id: int, names: list[str]) -> dict[str, int]:
    """Name -> key for each named source of the tenant; an unknown name is a ValueError."""
    if not names:
        return {}
    found = {
        r.name: r.id
        for r in conn.execute(
            select(Source.name, Source.id).where(
                Source.tenant_id == tenant_id, Source.name.in_(names)
            )
        )
    }
    missing = sorted(set(names) - set(found))
    if missing:
        raise ValueError(f"unknown source(s): {', '.join(missing)}")
    return found


def source_names(conn: Connection, tenant_id: int, keys: frozenset[int]) -> list[str]:
    return list(
        conn.execute(
            select(Source.name).where(Source.tenant_id == tenant_id, Source.id.in_(list(keys)))
        ).scalars()
    )


def update_source(conn: Connection, tenant_id: int, name: str, description: str) -> None:
    result = conn.execute(
        update(Source)
        .where(Source.tenant_id == tenant_id, Source.name == name)
        .values(description=description)
    )
    if result.rowcount == 0:
        raise NotFound(f"no source {name!r}")


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
        raise ValueError("a role name is 1-64 letters, digits, '.', '_' or '-'")
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
    sources: list[str] = field(default_factory=list)
    upload_sources: list[str] = field(default_factory=list)

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


def _user_from(conn: Connection, row) -> UserInfo:  # type: ignore[no-untyped-def]
    info = UserInfo(
        row.id,
        row.tenant_id,
        row.username,
        row.role,
        bool(row.is_system_admin),
        bool(row.disabled),
        row.password_hash,
    )
    for source in conn.execute(
        select(Source.name, UserSource.kind)
        .join(Source, Source.id == UserSource.source_id)
        .where(UserSource.user_id == row.id)
        .order_by(Source.name)
    ):
        (info.sources if source.kind == "read" else info.upload_sources).append(source.name)
    return info


def get_user(conn: Connection, tenant_id: int, username: str) -> UserInfo | None:
    row = conn.execute(
        select(AppUser).where(AppUser.tenant_id == tenant_id, AppUser.username == username)
    ).first()
    return None if row is None else _user_from(conn, row)


def list_users(conn: Connection, tenant_id: int) -> list[UserInfo]:
    rows = conn.execute(
        select(AppUser).where(AppUser.tenant_id == tenant_id).order_by(AppUser.username)
    ).all()
    return [_user_from(conn, row) for row in rows]


def _check_role(conn: Connection, tenant_id: int, role: str) -> None:
    if role_permissions(conn, tenant_id, role) is None:
        raise ValueError(f"unknown role {role!r}")


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
        raise ValueError("a user name is 1-64 letters, digits, '.', '_', '@' or '-'")
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


def update_user(conn: Connection, tenant_id: int, username: str, changes: dict) -> UserInfo:
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
        conn.execute(
            update(ApiToken)
            .where(
                ApiToken.user_id == user.id,
                ApiToken.kind == "session",
                ApiToken.revoked_at.is_(None),
            )
            .values(revoked_at=now())
        )
    return get_user(conn, tenant_id, username)  # type: ignore[return-value]


def delete_user(conn: Connection, tenant_id: int, username: str) -> None:
    user = get_user(conn, tenant_id, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    conn.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    conn.execute(delete(UserSource).where(UserSource.user_id == user.id))
    conn.execute(delete(AppUser).where(AppUser.id == user.id))


def scope_for_user(conn: Connection, user: UserInfo, principal: str) -> Scope:
    """The user's Scope: the role's permissions, the read and upload source lists."""
    perms = role_permissions(conn, user.tenant_id, user.role) or frozenset()
    if user.is_system_admin:
        perms = perms | {permissions.SYSTEM}
    read: set[int] = set()
    upload: set[int] = set()
    for row in conn.execute(
        select(UserSource.source_id, UserSource.kind).where(UserSource.user_id == user.id)
    ):
        (read if row.kind == "read" else upload).add(row.source_id)
    return Scope(
        tenant_id=user.tenant_id,
        source_pks=frozenset(read) if read else None,
        upload_source_pks=frozenset(upload) if upload else None,
        permissions=frozenset(perms),
        principal=principal,
    )


# --- tokens --------------------------------------------------------------------------------


def issue_token(
    conn: Connection,
    tenant_id: int,
    user_id: int,
    kind: str,
    name: str = "",
    lifetime: timedelta | None = None,
) -> tuple[int, str, datetime | None]:
    """A new API key (kind 'api_key') or login session ('session'). Returns (id, the token,
    expiry); the token itself is shown once and never stored."""
    from tessera.auth.secrets import API_KEY_PREFIX, SESSION_PREFIX

    token = new_token(API_KEY_PREFIX if kind == "api_key" else SESSION_PREFIX)
    expires_at = now() + lifetime if lifetime else None
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
                created_at=now(),
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
            "created_at": _iso(r.created_at),
            "expires_at": _iso(r.expires_at),
            "revoked_at": _iso(r.revoked_at),
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
        .values(revoked_at=now())
    )
    if result.rowcount == 0:
        raise NotFound(f"no active API key {token_id}")


@dataclass(frozen=True)
class TokenHolder:
    token_id: int
    kind: str
    name: str
    tenant_id: int
    user: UserInfo


_TOKEN_AND_USER = (
    select(
        ApiToken.id.label("token_id"),
        ApiToken.kind,
        ApiToken.name,
        ApiToken.tenant_id,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        AppUser.id.label("user_id"),
        AppUser.username,
        AppUser.role,
        AppUser.is_system_admin,
        AppUser.disabled,
        UserSource.source_id,
        UserSource.kind.label("source_kind"),
    )
    .join(AppUser, AppUser.id == ApiToken.user_id)
    .outerjoin(UserSource, UserSource.user_id == AppUser.id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def scope_of_token(conn: Connection, token: str) -> tuple[TokenHolder, Scope] | None:
    """A live token's holder and Scope in ONE query (this runs on every request, frames
    included): token, user and the user's source lists together."""
    rows = conn.execute(_TOKEN_AND_USER, {"token_hash": token_hash(token)}).all()
    if not rows:
        return None
    first = rows[0]
    if first.revoked_at is not None:
        return None
    if first.expires_at is not None and utc(first.expires_at) <= now():
        return None
    user = UserInfo(
        first.user_id,
        first.tenant_id,
        first.username,
        first.role,
        bool(first.is_system_admin),
        bool(first.disabled),
    )
    principal = user.username
    if first.kind == "api_key":
        principal = f"{principal} (key {first.token_id})"
    scope = _scope_from_rows(conn, user, rows, principal)
    return TokenHolder(first.token_id, first.kind, first.name, first.tenant_id, user), scope


_USER_BY_NAME = (
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
    )
    .outerjoin(UserSource, UserSource.user_id == AppUser.id)
    .where(AppUser.tenant_id == bindparam("tenant_id"), AppUser.username == bindparam("username"))
)


def user_and_scope(
    conn: Connection, tenant_id: int, username: str
) -> tuple[UserInfo, Scope] | None:
    """A user (with the password hash) and their Scope in one query (HTTP Basic)."""
    rows = conn.execute(_USER_BY_NAME, {"tenant_id": tenant_id, "username": username}).all()
    if not rows:
        return None
    first = rows[0]
    user = UserInfo(
        first.user_id,
        first.tenant_id,
        first.username,
        first.role,
        bool(first.is_system_admin),
        bool(first.disabled),
        first.password_hash,
    )
    return user, _scope_from_rows(conn, user, rows, user.username)


def _scope_from_rows(conn: Connection, user: UserInfo, rows, principal: str) -> Scope:  # type: ignore[no-untyped-def]
    read = frozenset(r.source_id for r in rows if r.source_kind == "read")
    upload = frozenset(r.source_id for r in rows if r.source_kind == "upload")
    perms = role_permissions(conn, user.tenant_id, user.role) or frozenset()
    if user.is_system_admin:
        perms = perms | {permissions.SYSTEM}
    return Scope(
        tenant_id=user.tenant_id,
        source_pks=read or None,
        upload_source_pks=upload or None,
        permissions=frozenset(perms),
        principal=principal,
    )


def user_of_token(conn: Connection, token: str) -> TokenHolder | None:
    """The user a live (not revoked, not expired) token belongs to, in any tenant."""
    row = conn.execute(
        select(
            ApiToken.id,
            ApiToken.kind,
            ApiToken.name,
            ApiToken.tenant_id,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            ApiToken.user_id,
        ).where(ApiToken.token_hash == token_hash(token))
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and utc(row.expires_at) <= now():
        return None
    user_row = conn.execute(select(AppUser).where(AppUser.id == row.user_id)).first()
    if user_row is None:
        return None
    return TokenHolder(row.id, row.kind, row.name, row.tenant_id, _user_from(conn, user_row))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat()
