"""`tessera admin ...`: bootstrap a tenant, its first admin and an API key on a fresh install,
and manage users and keys from the machine that holds the index (no HTTP, no credentials:
whoever can open the index is already trusted)."""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Connection

from tessera.auth.audit import Event, record_now
from tessera.cli_common import add_action, open_for_command
from tessera.index import accounts
from tessera.index.errors import NotFound
from tessera.index.tenancy import TenantInfo, create_tenant, tenant_by_name


def _tenant(conn: Connection, name: str) -> TenantInfo:
    tenant = tenant_by_name(conn, name)
    if tenant is None:
        raise NotFound(f"no tenant {name!r} (create it with `tessera admin tenant-create`)")
    return tenant


def _password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    return getattr(args, "password", None)


def _audit(conn: Connection, tenant_id: int, action: str, target: str) -> None:
    record_now(conn, [Event(tenant_id, "cli", action, target=target, remote_addr="local")])


def cmd_bootstrap(args: argparse.Namespace) -> dict:
    # The fresh-install command: it brings the schema to head itself (docs/running.md).
    archive = open_for_command(args, migrate=True)
    password = _password(args) or secrets.token_urlsafe(12)
    out: dict = {"tenant": args.tenant, "username": args.username}
    with archive.database.write() as conn:
        tenant = tenant_by_name(conn, args.tenant)
        if tenant is None:
            tenant = create_tenant(conn, args.tenant)
            _audit(conn, tenant.id, "admin.tenant.create", tenant.name)
        user = accounts.get_user(conn, tenant.id, args.username)
        if user is None:
            accounts.create_user(
                conn,
                tenant.id,
                args.username,
                "admin",
                password,
                is_system_admin=args.system_admin,
            )
            _audit(conn, tenant.id, "admin.user.create", args.username)
            out["password"] = password
            user = accounts.get_user(conn, tenant.id, args.username)
        assert user is not None
        key_id, key, _ = accounts.issue_token(conn, tenant.id, user.id, "api_key", args.key_name)
        _audit(conn, tenant.id, "admin.api_key.create", args.username)
    out.update(api_key=key, api_key_id=key_id)
    root = "/dicomweb" if tenant.name == "default" else f"/t/{tenant.name}/dicomweb"
    out["dicomweb_root"] = root
    return out


def cmd_tenant_create(args: argparse.Namespace) -> dict:
    archive = open_for_command(args)
    with archive.database.write() as conn:
        tenant = create_tenant(conn, args.name)
        _audit(conn, tenant.id, "admin.tenant.create", tenant.name)
    return {"tenant": tenant.name, "dicomweb_root": f"/t/{tenant.name}/dicomweb"}


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def cmd_user_create(args: argparse.Namespace) -> dict:
    archive = open_for_command(args)
    with archive.database.write() as conn:
        tenant = _tenant(conn, args.tenant)
        accounts.create_user(
            conn,
            tenant.id,
            args.username,
            args.role,
            _password(args),
            _split(args.sources),
            _split(args.upload_sources),
            is_system_admin=args.system_admin,
        )
        _audit(conn, tenant.id, "admin.user.create", args.username)
        created = accounts.get_user(conn, tenant.id, args.username)
        assert created is not None
        return created.public()


def cmd_users(args: argparse.Namespace) -> list:
    archive = open_for_command(args)
    with archive.database.read() as conn:
        tenant = _tenant(conn, args.tenant)
        return [u.public() for u in accounts.list_users(conn, tenant.id)]


def cmd_key_create(args: argparse.Namespace) -> dict:
    archive = open_for_command(args)
    lifetime = timedelta(days=args.expires_days) if args.expires_days else None
    with archive.database.write() as conn:
        tenant = _tenant(conn, args.tenant)
        user = accounts.get_user(conn, tenant.id, args.username)
        if user is None:
            raise NotFound(f"no user {args.username!r} in tenant {tenant.name!r}")
        key_id, key, expires_at = accounts.issue_token(
            conn, tenant.id, user.id, "api_key", args.name, lifetime
        )
        _audit(conn, tenant.id, "admin.api_key.create", args.username)
    return {
        "api_key": key,
        "api_key_id": key_id,
        "expires_at": None if expires_at is None else expires_at.isoformat(),
    }


def cmd_key_revoke(args: argparse.Namespace) -> dict:
    archive = open_for_command(args)
    with archive.database.write() as conn:
        tenant = _tenant(conn, args.tenant)
        accounts.revoke_token(conn, tenant.id, args.key_id)
        _audit(conn, tenant.id, "admin.api_key.revoke", str(args.key_id))
    return {"revoked": args.key_id}


def register(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="tenants, users and API keys (run on the server)")
    actions = admin.add_subparsers(dest="admin_command", required=True)

    def action(
        name: str, func: Callable[[argparse.Namespace], dict | list], help_text: str
    ) -> argparse.ArgumentParser:
        return add_action(actions, name, func, help_text)

    def password_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--password", help="password (visible to `ps`; prefer the next)")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )

    boot = action(
        "bootstrap",
        cmd_bootstrap,
        "create a tenant (if missing), its first admin and an API key; prints them once",
    )
    boot.add_argument("--tenant", default="default", help="tenant name (default: default)")
    boot.add_argument("--username", default="admin", help="admin user name (default: admin)")
    boot.add_argument("--key-name", default="bootstrap", help="name of the API key")
    boot.add_argument(
        "--system-admin", action="store_true", help="the user may also manage tenants"
    )
    password_flags(boot)

    tenant = action("tenant-create", cmd_tenant_create, "create a tenant")
    tenant.add_argument("name")

    user = action("user-create", cmd_user_create, "create a user")
    user.add_argument("username")
    user.add_argument("--tenant", default="default")
    user.add_argument(
        "--role",
        required=True,
        help="admin, technologist, referring_physician, reading_physician or a custom role",
    )
    user.add_argument("--sources", help="comma-separated sources the user sees (none: all)")
    user.add_argument(
        "--upload-sources", help="comma-separated sources the user may upload with (none: any)"
    )
    user.add_argument("--system-admin", action="store_true")
    password_flags(user)

    users = action("users", cmd_users, "list the users of a tenant")
    users.add_argument("--tenant", default="default")

    key = action("key-create", cmd_key_create, "issue an API key for a user (printed once)")
    key.add_argument("username")
    key.add_argument("--tenant", default="default")
    key.add_argument("--name", default="", help="what the key is for")
    key.add_argument("--expires-days", type=float, help="expiry (default: none)")

    revoke = action("key-revoke", cmd_key_revoke, "revoke an API key by id")
    revoke.add_argument("key_id", type=int)
    revoke.add_argument("--tenant", default="default")
