"""What a signed-in user does for themselves, at `{api}/me/...` and `{api}/viewer-token`:
change their own password, and mint a short-lived, read-only token for a viewer.

Both need a user behind the credentials (not anonymous). A viewer token can do neither: it
reads, nothing else (`tessera.auth.authenticate.viewer_scope`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.auth.audit import Event
from tessera.auth.authenticate import Identity
from tessera.auth.secrets import verify_password
from tessera.dicomweb.api_common import (
    audit_event,
    body_field,
    json_answer,
    json_body,
    read_in_thread,
    write_with_event,
)
from tessera.dicomweb.context import archive_of, identity_of, scope_of, tenant_of
from tessera.dicomweb.errors import BadRequest, ClientError
from tessera.dicomweb.gate import guarded
from tessera.index import accounts


def _signed_in_user(request: Request, doing: str) -> Identity:
    """The caller's identity when it names a user and is not a viewer token."""
    identity = identity_of(request)
    if identity is None or identity.username is None:
        raise BadRequest(f"{doing} needs a signed-in user (anonymous requests have none)")
    if identity.method == "viewer":
        raise ClientError(403, f"a viewer token cannot be used for {doing}")
    return identity


async def password_change(request: Request) -> Response:
    """`{"current_password", "new_password"}`: the current one is checked (403 when wrong),
    the new one must meet the password policy (400 naming it). The user's other login
    sessions and viewer tokens end; the session making the change goes on."""
    identity = _signed_in_user(request, "changing a password")
    username = identity.username
    assert username is not None
    tenant = tenant_of(request)
    body = await json_body(request)
    current = body_field(body, "current_password")
    new = body_field(body, "new_password")
    if new == current:
        raise BadRequest("the new password must differ from the current one")
    user = await read_in_thread(request, lambda conn: accounts.get_user(conn, tenant.id, username))
    stored = user.password_hash if user is not None else None
    if not await run_in_threadpool(verify_password, stored, current):
        client = request.client.host if request.client else ""
        request.app.state.access.audit.add(
            Event(
                tenant.id,
                username,
                "user.password.change",
                "denied",
                target=username,
                remote_addr=client,
            )
        )
        raise ClientError(403, "the current password is wrong")
    keep = identity.token_id if identity.method == "session" else None
    await write_with_event(
        request,
        lambda conn: accounts.update_user(
            conn, tenant.id, username, {"password": new}, keep_token_id=keep
        ),
        audit_event(request, "user.password.change", username),
    )
    return Response(status_code=204)


async def viewer_token(request: Request) -> Response:
    """A token for a viewer's `?token=`: valid `TESSERA_VIEWER_TOKEN_TTL_SECONDS` (default
    10 minutes), for searching and retrieving only, within the caller's tenant and source
    lock. Minted from a login session, it ends with that session's logout."""
    identity = _signed_in_user(request, "minting a viewer token")
    username = identity.username
    assert username is not None
    tenant = tenant_of(request)
    await scope_of(request)  # the route's `read` permission was checked at the gate
    lifetime = timedelta(seconds=archive_of(request).settings.viewer_token_ttl_seconds)
    name = (
        accounts.viewer_token_name(identity.token_id)
        if identity.method == "session" and identity.token_id is not None
        else identity.method
    )

    def work(conn: Connection) -> tuple[int, str, datetime | None]:
        user = accounts.get_user(conn, tenant.id, username)
        if user is None:
            raise BadRequest(f"no user {username!r}")
        return accounts.issue_token(conn, tenant.id, user.id, "viewer", name, lifetime)

    _, token, expires_at = await write_with_event(
        request, work, audit_event(request, "viewer_token.create", username)
    )
    return json_answer(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(lifetime.total_seconds()),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
        201,
    )


routes = [
    guarded("/me/password", password_change, methods=["POST"], permission=None),
    guarded("/viewer-token", viewer_token, methods=["POST"], permission=permissions.READ),
]
