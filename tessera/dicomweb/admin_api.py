"""The admin REST API (JSON), mounted at `/api/v1` (default tenant) and `/t/{tenant}/api/v1`.

Login, tenants and AE titles (system administrator), users, roles, sources, API keys, DIMSE
peers, policies and the audit trail. Every change is written to the audit trail in the same transaction. Secrets
appear in a response only once: the token of a login or a new API key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.auth.audit import Event, query_events
from tessera.auth.authenticate import AuthenticationFailed, login, scope_for_user
from tessera.auth.delegation import require_permissions_within, require_within
from tessera.auth.roles import parse_permissions
from tessera.dicomweb.api_common import (
    audit_event,
    body_field,
    json_answer,
    json_body,
    read_in_thread,
    write_with_event,
)
from tessera.dicomweb.context import archive_of, identity_of, scope_of, tenant_of
from tessera.dicomweb.errors import BadRequest, NotFound
from tessera.dicomweb.gate import guarded
from tessera.index import accounts
from tessera.index.peers import (
    Peer,
    add_ae_title,
    add_peer,
    list_ae_titles,
    list_peers,
    peer_by_ae_title,
    remove_ae_title,
    remove_peer,
)
from tessera.index.sources import (
    add_source,
    source_descriptions,
    source_names,
    source_settings,
    study_sources,
    update_source,
)
from tessera.index.tenancy import (
    create_tenant,
    duplicate_policy,
    linked_matching,
    list_tenants,
    set_duplicate_policy,
    set_linked_matching,
    tenant_by_name,
)
from tessera.scope import Scope


def _user_rights(conn: Connection, tenant_id: int, username: str) -> Scope:
    """The rights `username` holds now (NotFound when there is no such user)."""
    user = accounts.get_user(conn, tenant_id, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return scope_for_user(conn, user, username)


def _peer_rights(conn: Connection, tenant_id: int, title: str) -> Scope | None:
    """The rights a DIMSE peer acts with (None when there is no such peer)."""
    peer = peer_by_ae_title(conn, tenant_id, title)
    if peer is None:
        return None
    granted = set()
    if peer.may_query or peer.may_be_move_destination:
        granted.add(permissions.READ)
    if peer.may_store:
        granted.add(permissions.UPLOAD)
    return Scope(
        tenant_id=tenant_id,
        source_pks=peer.query_source_pks or None,
        upload_source_pks=(
            None if peer.upload_source_pk is None else frozenset({peer.upload_source_pk})
        ),
        permissions=frozenset(granted),
    )


# --- login / me ----------------------------------------------------------------------------


async def login_endpoint(request: Request) -> Response:
    archive = archive_of(request)
    tenant = tenant_of(request)
    body = await json_body(request, ("username", "password"))
    username = body_field(body, "username")
    password = body_field(body, "password")
    lifetime = timedelta(seconds=archive.settings.session_ttl_seconds)
    client = request.client.host if request.client else ""
    access = request.app.state.access
    try:
        token, expires_at = await run_in_threadpool(
            login, archive.database, tenant, username, password, lifetime
        )
    except AuthenticationFailed:
        access.audit.add(Event(tenant.id, username[:64], "login", "denied", remote_addr=client))
        raise
    access.audit.add(Event(tenant.id, username, "login", "ok", remote_addr=client))
    return json_answer(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(lifetime.total_seconds()),
            "expires_at": expires_at.isoformat(),
            "tenant": tenant.name,
        }
    )


async def logout(request: Request) -> Response:
    identity = identity_of(request)
    if identity is None or identity.method != "session" or identity.token_id is None:
        raise BadRequest("only a login token can be logged out (revoke API keys instead)")
    tenant, token_id = tenant_of(request), identity.token_id

    def work(conn: Connection) -> Any:
        accounts.revoke_token(conn, tenant.id, token_id, kind="session")
        accounts.revoke_viewer_tokens(conn, tenant.id, token_id)

    await write_with_event(request, work, audit_event(request, "logout", identity.username or ""))
    return Response(status_code=204)


async def me(request: Request) -> Response:
    scope = await scope_of(request)
    identity = identity_of(request)
    tenant = tenant_of(request)

    def names(conn: Connection, keys: Any) -> Any:
        if keys is None:
            return None
        return sorted(source_names(conn, tenant.id, keys))

    def described(conn: Connection) -> Any:
        # The sources the caller sees and those named as its upload sources; every source
        # when not locked. A locked caller learns no other source's name.
        if scope.source_pks is None:
            return source_descriptions(conn, tenant.id, None)
        named = scope.source_pks | (scope.upload_source_pks or frozenset())
        return source_descriptions(conn, tenant.id, named)

    sources, upload_sources, descriptions = await read_in_thread(
        request,
        lambda conn: (
            names(conn, scope.source_pks),
            names(conn, scope.upload_source_pks),
            described(conn),
        ),
    )
    return json_answer(
        {
            "tenant": tenant.name,
            "principal": scope.principal,
            "username": identity.username if identity else None,
            "authenticated_by": identity.method if identity else None,
            "permissions": sorted(scope.permissions),
            "sources": sources,
            "upload_sources": upload_sources,
            "source_descriptions": descriptions,
        }
    )


# --- tenants (system administrator) -------------------------------------------------------


async def tenants_list(request: Request) -> Response:
    found = await read_in_thread(request, list_tenants)
    return json_answer([{"name": t.name, "duplicate_policy": t.duplicate_policy} for t in found])


async def tenants_create(request: Request) -> Response:
    body = await json_body(request, ("name", "admin"))
    name = body_field(body, "name")
    admin = body.get("admin")
    if admin is not None and not isinstance(admin, dict):
        raise BadRequest("'admin' must be an object with username and password")

    def work(conn: Connection) -> Any:
        tenant = create_tenant(conn, name)
        if admin:
            accounts.create_user(
                conn,
                tenant.id,
                body_field(admin, "username"),
                "admin",
                body_field(admin, "password"),
            )
        return tenant

    tenant = await write_with_event(
        request, work, audit_event(request, "admin.tenant.create", name)
    )
    return json_answer({"name": tenant.name, "duplicate_policy": tenant.duplicate_policy}, 201)


# --- users ---------------------------------------------------------------------------------


async def users_list(request: Request) -> Response:
    tenant = tenant_of(request)
    users = await read_in_thread(request, lambda conn: accounts.list_users(conn, tenant.id))
    return json_answer([u.public() for u in users])


async def users_create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await json_body(request, ("username", "role", "password", "sources", "upload_sources"))
    username = body_field(body, "username")
    role = body_field(body, "role")
    password = body_field(body, "password", required=False)
    sources = body_field(body, "sources", list, required=False)
    upload_sources = body_field(body, "upload_sources", list, required=False)

    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        accounts.create_user(conn, tenant.id, username, role, password, sources, upload_sources)
        require_within(caller, _user_rights(conn, tenant.id, username), f"user {username!r}")
        return accounts.get_user(conn, tenant.id, username)

    user = await write_with_event(
        request,
        work,
        audit_event(
            request,
            "admin.user.create",
            username,
            {"role": role, "sources": sources, "upload_sources": upload_sources},
        ),
    )
    return json_answer(user.public(), 201)


async def users_get(request: Request) -> Response:
    tenant = tenant_of(request)
    username = request.path_params["username"]
    user = await read_in_thread(request, lambda conn: accounts.get_user(conn, tenant.id, username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    return json_answer(user.public())


async def users_update(request: Request) -> Response:
    tenant = tenant_of(request)
    username = request.path_params["username"]
    body = await json_body(request, ("role", "password", "disabled", "sources", "upload_sources"))
    changes: dict = {}
    for name, kind in (
        ("role", str),
        ("password", str),
        ("disabled", bool),
        ("sources", list),
        ("upload_sources", list),
    ):
        if name in body:
            changes[name] = body_field(body, name, kind, required=False)
    if not changes:
        raise BadRequest("nothing to change (role, password, disabled, sources, upload_sources)")
    shown = {k: v for k, v in changes.items() if k != "password"}
    if "password" in changes:
        shown["password_changed"] = True
    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        what = f"user {username!r}"
        require_within(caller, _user_rights(conn, tenant.id, username), what)
        user = accounts.update_user(conn, tenant.id, username, changes)
        require_within(caller, _user_rights(conn, tenant.id, username), what)
        return user

    user = await write_with_event(
        request, work, audit_event(request, "admin.user.update", username, shown)
    )
    return json_answer(user.public())


async def users_delete(request: Request) -> Response:
    tenant = tenant_of(request)
    username = request.path_params["username"]
    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        require_within(caller, _user_rights(conn, tenant.id, username), f"user {username!r}")
        accounts.delete_user(conn, tenant.id, username)

    await write_with_event(request, work, audit_event(request, "admin.user.delete", username))
    return Response(status_code=204)


# --- roles ---------------------------------------------------------------------------------


async def roles_list(request: Request) -> Response:
    tenant = tenant_of(request)
    return json_answer(
        await read_in_thread(request, lambda conn: accounts.list_roles(conn, tenant.id))
    )


async def roles_put(request: Request) -> Response:
    tenant = tenant_of(request)
    name = request.path_params["name"]
    body = await json_body(request, ("permissions", "description"))
    perms = body_field(body, "permissions", list)
    description = body_field(body, "description", required=False) or ""
    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        held = accounts.role_permissions(conn, tenant.id, name)
        if held is not None:
            require_permissions_within(caller, held, f"role {name!r}")
        # Unknown names are a 400 before they can be a 403.
        require_permissions_within(caller, parse_permissions(perms), f"role {name!r}")
        return accounts.save_role(conn, tenant.id, name, perms, description)

    created = await write_with_event(
        request, work, audit_event(request, "admin.role.save", name, {"permissions": perms})
    )
    return json_answer(
        {"name": name, "permissions": sorted(perms), "builtin": False, "description": description},
        201 if created else 200,
    )


async def roles_delete(request: Request) -> Response:
    tenant = tenant_of(request)
    name = request.path_params["name"]
    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        held = accounts.role_permissions(conn, tenant.id, name)
        if held is not None:
            require_permissions_within(caller, held, f"role {name!r}")
        accounts.delete_role(conn, tenant.id, name)

    await write_with_event(request, work, audit_event(request, "admin.role.delete", name))
    return Response(status_code=204)


# --- sources -------------------------------------------------------------------------------


async def sources_list(request: Request) -> Response:
    tenant = tenant_of(request)
    return json_answer(await read_in_thread(request, lambda conn: source_settings(conn, tenant.id)))


async def study_sources_list(request: Request) -> Response:
    """The sources of a study's instances the caller sees, with their descriptions (404 when
    the caller sees none of its instances)."""
    scope = await scope_of(request)
    uid = request.path_params["study"]
    return json_answer(await read_in_thread(request, lambda conn: study_sources(conn, scope, uid)))


async def sources_create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await json_body(request, ("name", "description", "default_issuer_of_patient_id"))
    name = body_field(body, "name")
    description = body_field(body, "description", required=False) or ""
    issuer = body_field(body, "default_issuer_of_patient_id", required=False) or ""
    await write_with_event(
        request,
        lambda conn: add_source(conn, tenant.id, name, description, issuer),
        audit_event(request, "admin.source.create", name, {"default_issuer_of_patient_id": issuer}),
    )
    return json_answer(
        {"name": name, "description": description, "default_issuer_of_patient_id": issuer}, 201
    )


async def sources_update(request: Request) -> Response:
    """PATCH `description` and/or `default_issuer_of_patient_id` (the issuer given to this
    source's instances that carry none; '' for none). It applies to instances received
    afterwards (docs/identity.md)."""
    tenant = tenant_of(request)
    name = request.path_params["name"]
    body = await json_body(request, ("description", "default_issuer_of_patient_id"))
    changes = {
        key: body_field(body, key)
        for key in ("description", "default_issuer_of_patient_id")
        if key in body
    }
    if not changes:
        raise BadRequest("give 'description' and/or 'default_issuer_of_patient_id'")

    def work(conn: Connection) -> Any:
        update_source(conn, tenant.id, name, changes)
        return next(s for s in source_settings(conn, tenant.id) if s["name"] == name)

    updated = await write_with_event(
        request, work, audit_event(request, "admin.source.update", name, dict(changes))
    )
    return json_answer(updated)


# --- API keys ------------------------------------------------------------------------------


async def keys_list(request: Request) -> Response:
    tenant = tenant_of(request)
    return json_answer(
        await read_in_thread(request, lambda conn: accounts.list_api_keys(conn, tenant.id))
    )


async def keys_create(request: Request) -> Response:
    tenant = tenant_of(request)
    body = await json_body(request, ("user", "name", "expires_in_days"))
    username = body_field(body, "user")
    name = body_field(body, "name", required=False) or ""
    days = body.get("expires_in_days")
    if days is not None and (not isinstance(days, int | float) or days <= 0):
        raise BadRequest("'expires_in_days' must be a positive number")
    lifetime = timedelta(days=days) if days else None
    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        require_within(caller, _user_rights(conn, tenant.id, username), f"user {username!r}")
        user = accounts.get_user(conn, tenant.id, username)
        assert user is not None  # _user_rights answered 404 for an unknown user
        return accounts.issue_token(conn, tenant.id, user.id, "api_key", name, lifetime)

    key_id, token, expires_at = await write_with_event(
        request, work, audit_event(request, "admin.api_key.create", username, {"name": name})
    )
    return json_answer(
        {
            "id": key_id,
            "user": username,
            "name": name,
            # Shown this once; only its hash is stored.
            "key": token,
            "expires_at": None if expires_at is None else expires_at.isoformat(),
        },
        201,
    )


async def keys_revoke(request: Request) -> Response:
    tenant = tenant_of(request)
    try:
        key_id = int(request.path_params["key_id"])
    except ValueError:
        raise NotFound("no such API key") from None
    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        owner = accounts.api_key_owner(conn, tenant.id, key_id)
        if owner is not None:
            require_within(caller, _user_rights(conn, tenant.id, owner), f"user {owner!r}")
        accounts.revoke_token(conn, tenant.id, key_id)

    await write_with_event(request, work, audit_event(request, "admin.api_key.revoke", str(key_id)))
    return Response(status_code=204)


# --- policies ------------------------------------------------------------------------------


def _policies(conn: Connection, tenant_id: int) -> dict[str, object]:
    return {
        "duplicate_policy": duplicate_policy(conn, tenant_id),
        "linked_matching": linked_matching(conn, tenant_id),
    }


async def policies_get(request: Request) -> Response:
    tenant = tenant_of(request)
    return json_answer(await read_in_thread(request, lambda conn: _policies(conn, tenant.id)))


async def policies_put(request: Request) -> Response:
    """Any of `duplicate_policy` ('reject' | 'overwrite') and `linked_matching` (bool: a
    Patient ID search also returns linked identities' studies, docs/identity.md)."""
    tenant = tenant_of(request)
    body = await json_body(request, ("duplicate_policy", "linked_matching"))
    policy = body_field(body, "duplicate_policy", required=False)
    linked = body_field(body, "linked_matching", bool, required=False)
    if policy is None and linked is None:
        raise BadRequest("give 'duplicate_policy' and/or 'linked_matching'")

    def work(conn: Connection) -> Any:
        if policy is not None:
            set_duplicate_policy(conn, tenant.id, policy)
        if linked is not None:
            set_linked_matching(conn, tenant.id, linked)
        return _policies(conn, tenant.id)

    changes = {
        k: v
        for k, v in (("duplicate_policy", policy), ("linked_matching", linked))
        if v is not None
    }
    event = audit_event(request, "admin.policy.update", ",".join(changes), changes)
    return json_answer(await write_with_event(request, work, event))


# --- DIMSE peers and AE titles (tables and functions of tessera.index.peers) ----------------


def _peer_json(peer: Peer) -> dict:
    return {
        "ae_title": peer.ae_title,
        "host": peer.host,
        "port": peer.port,
        "upload_source": peer.upload_source,
        "query_sources": list(peer.query_sources),
        "may_store": peer.may_store,
        "may_query": peer.may_query,
        "may_be_move_destination": peer.may_be_move_destination,
        "staged": peer.staged,
        "description": peer.description,
    }


async def peers_list(request: Request) -> Response:
    tenant = tenant_of(request)
    found = await read_in_thread(request, lambda conn: list_peers(conn, tenant.id))
    return json_answer([_peer_json(peer) for peer in found])


async def peers_get(request: Request) -> Response:
    tenant = tenant_of(request)
    title = request.path_params["ae_title"]
    peer = await read_in_thread(request, lambda conn: peer_by_ae_title(conn, tenant.id, title))
    if peer is None:
        raise NotFound(f"no peer {title!r}")
    return json_answer(_peer_json(peer))


async def peers_put(request: Request) -> Response:
    tenant = tenant_of(request)
    title = request.path_params["ae_title"]
    body = await json_body(
        request,
        (
            "host",
            "port",
            "may_store",
            "may_query",
            "may_be_move_destination",
            "staged",
            "upload_source",
            "query_sources",
            "description",
        ),
    )
    host = body_field(body, "host")
    port = body_field(body, "port", int)
    flags = {}
    for name in ("may_store", "may_query", "may_be_move_destination", "staged"):
        if name in body:
            flags[name] = body_field(body, name, bool)

    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        before = _peer_rights(conn, tenant.id, title)
        if before is not None:
            require_within(caller, before, f"peer {title!r}")
        add_peer(
            conn,
            tenant.id,
            title,
            host,
            port,
            upload_source=body_field(body, "upload_source", required=False),
            query_sources=body_field(body, "query_sources", list, required=False),
            description=body_field(body, "description", required=False) or "",
            **flags,
        )
        rights = _peer_rights(conn, tenant.id, title)
        assert rights is not None  # the peer was just written
        require_within(caller, rights, f"peer {title!r}")
        return before is not None, peer_by_ae_title(conn, tenant.id, title)

    existed, peer = await write_with_event(
        request, work, audit_event(request, "admin.peer.save", title, {"host": host, "port": port})
    )
    return json_answer(_peer_json(peer), 200 if existed else 201)


async def peers_delete(request: Request) -> Response:
    tenant = tenant_of(request)
    title = request.path_params["ae_title"]

    caller = await scope_of(request)

    def work(conn: Connection) -> Any:
        before = _peer_rights(conn, tenant.id, title)
        if before is None:
            raise NotFound(f"no peer {title!r}")
        require_within(caller, before, f"peer {title!r}")
        remove_peer(conn, tenant.id, title)

    await write_with_event(request, work, audit_event(request, "admin.peer.delete", title))
    return Response(status_code=204)


async def ae_titles_list(request: Request) -> Response:
    rows = await read_in_thread(request, list_ae_titles)
    return json_answer([{"ae_title": title, "tenant": tenant} for title, tenant in rows])


async def ae_titles_put(request: Request) -> Response:
    """Which tenant a called AE title selects (unique across tenants: system only)."""
    title = request.path_params["ae_title"]
    body = await json_body(request, ("tenant",))
    tenant_name = body_field(body, "tenant")

    def work(conn: Connection) -> Any:
        target = tenant_by_name(conn, tenant_name)
        if target is None:
            raise BadRequest(f"no tenant {tenant_name!r}")
        add_ae_title(conn, target.id, title)

    await write_with_event(
        request, work, audit_event(request, "admin.ae_title.create", title, {"tenant": tenant_name})
    )
    return json_answer({"ae_title": title.strip(), "tenant": tenant_name}, 201)


async def ae_titles_delete(request: Request) -> Response:
    title = request.path_params["ae_title"]

    def work(conn: Connection) -> Any:
        for registered, tenant_name in list_ae_titles(conn):
            if registered == title.strip():
                target = tenant_by_name(conn, tenant_name)
                assert target is not None  # listed with its tenant in the same transaction
                remove_ae_title(conn, target.id, title)
                return
        raise NotFound(f"no AE title {title!r}")

    await write_with_event(request, work, audit_event(request, "admin.ae_title.delete", title))
    return Response(status_code=204)


# --- audit ---------------------------------------------------------------------------------


async def audit_list(request: Request) -> Response:
    tenant = tenant_of(request)
    params = request.query_params
    since = None
    if params.get("since"):
        try:
            since = datetime.fromisoformat(params["since"])
        except ValueError:
            raise BadRequest("'since' must be an ISO 8601 date-time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    try:
        limit = min(int(params.get("limit", "100")), 1000)
    except ValueError:
        raise BadRequest("'limit' must be a number") from None
    events = await read_in_thread(
        request,
        lambda conn: query_events(
            conn, tenant.id, since, params.get("action"), params.get("principal"), limit
        ),
    )
    return json_answer(events)


SYSTEM, ADMIN, READ = permissions.SYSTEM, permissions.ADMIN, permissions.READ

# Each route's permission, checked at the gate (tessera.dicomweb.gate) before the handler
# runs. None: any authenticated caller (login itself passes without credentials). Admin
# changes record their own audit events, in the transaction of the change (_write).
routes = [
    guarded("/login", login_endpoint, methods=["POST"], permission=None),
    guarded("/logout", logout, methods=["POST"], permission=None),
    guarded("/me", me, methods=["GET"], permission=None),
    guarded("/tenants", tenants_list, methods=["GET"], permission=SYSTEM),
    guarded("/tenants", tenants_create, methods=["POST"], permission=SYSTEM),
    guarded("/users", users_list, methods=["GET"], permission=ADMIN),
    guarded("/users", users_create, methods=["POST"], permission=ADMIN),
    guarded("/users/{username}", users_get, methods=["GET"], permission=ADMIN),
    guarded("/users/{username}", users_update, methods=["PATCH"], permission=ADMIN),
    guarded("/users/{username}", users_delete, methods=["DELETE"], permission=ADMIN),
    guarded("/roles", roles_list, methods=["GET"], permission=ADMIN),
    guarded("/roles/{name}", roles_put, methods=["PUT"], permission=ADMIN),
    guarded("/roles/{name}", roles_delete, methods=["DELETE"], permission=ADMIN),
    guarded("/sources", sources_list, methods=["GET"], permission=ADMIN),
    guarded("/sources", sources_create, methods=["POST"], permission=ADMIN),
    guarded("/sources/{name}", sources_update, methods=["PATCH"], permission=ADMIN),
    guarded("/studies/{study}/sources", study_sources_list, methods=["GET"], permission=READ),
    guarded("/api-keys", keys_list, methods=["GET"], permission=ADMIN),
    guarded("/api-keys", keys_create, methods=["POST"], permission=ADMIN),
    guarded("/api-keys/{key_id}", keys_revoke, methods=["DELETE"], permission=ADMIN),
    guarded("/policies", policies_get, methods=["GET"], permission=ADMIN),
    guarded("/policies", policies_put, methods=["PUT"], permission=ADMIN),
    guarded("/peers", peers_list, methods=["GET"], permission=ADMIN),
    guarded("/peers/{ae_title}", peers_get, methods=["GET"], permission=ADMIN),
    guarded("/peers/{ae_title}", peers_put, methods=["PUT"], permission=ADMIN),
    guarded("/peers/{ae_title}", peers_delete, methods=["DELETE"], permission=ADMIN),
    guarded("/ae-titles", ae_titles_list, methods=["GET"], permission=SYSTEM),
    guarded("/ae-titles/{ae_title}", ae_titles_put, methods=["PUT"], permission=SYSTEM),
    guarded("/ae-titles/{ae_title}", ae_titles_delete, methods=["DELETE"], permission=SYSTEM),
    guarded("/audit", audit_list, methods=["GET"], permission=ADMIN),
]
