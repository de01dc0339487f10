"""`{api}/notifications`: the calling user's own e-mail notifications ("a study is ready").

Needs the `read` permission and a user account (an anonymous caller has no mailbox). The
messages only ever carry what the user may see: the feed is read through the user's own,
current Scope at every send.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.dicomweb.api_common import json_answer, json_body, read_in_thread, write_in_thread
from tessera.dicomweb.context import identity_of, scope_of
from tessera.dicomweb.errors import BadRequest, NotFound
from tessera.dicomweb.events_http import string_list
from tessera.dicomweb.gate import guarded
from tessera.index import accounts, notifications

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}$")


def _username(request: Request) -> str:
    identity = identity_of(request)
    if identity is None or not identity.username:
        raise BadRequest("notifications belong to a user account; sign in as a user")
    return identity.username


def _user_id(conn, tenant_id: int, username: str) -> int:
    user = accounts.get_user(conn, tenant_id, username)
    if user is None:
        raise BadRequest("notifications belong to a user account; sign in as a user")
    return user.id


async def notifications_list(request: Request) -> Response:
    scope = await scope_of(request)
    username = _username(request)
    return json_answer(
        await read_in_thread(
            request,
            lambda conn: notifications.list_for_user(
                conn, scope.tenant_id, _user_id(conn, scope.tenant_id, username)
            ),
        )
    )


async def notifications_create(request: Request) -> Response:
    scope = await scope_of(request)
    username = _username(request)
    body = await json_body(request)
    email = body.get("email")
    if not isinstance(email, str) or not EMAIL_RE.match(email):
        raise BadRequest("'email' must be an e-mail address")
    kinds = string_list(body, "event_types") or list(notifications.DEFAULT_KINDS)
    unknown = sorted(set(kinds) - notifications.PERSON_KINDS)
    if unknown:
        raise BadRequest(
            f"unknown or per-instance event type {unknown[0]!r} "
            f"(one of {', '.join(sorted(notifications.PERSON_KINDS))})"
        )

    def work(conn):
        user_id = _user_id(conn, scope.tenant_id, username)
        return notifications.create(conn, scope.tenant_id, user_id, email, kinds)

    return json_answer(await write_in_thread(request, work), 201)


async def notifications_delete(request: Request) -> Response:
    scope = await scope_of(request)
    username = _username(request)
    raw = request.path_params["notification_id"]
    if not raw.isdigit():
        raise NotFound(f"no notification {raw}")

    def work(conn):
        user_id = _user_id(conn, scope.tenant_id, username)
        notifications.remove(conn, scope.tenant_id, user_id, int(raw))

    await write_in_thread(request, work)
    return Response(status_code=204)


routes = [
    guarded("/notifications", notifications_list, methods=["GET"], permission=permissions.READ),
    guarded("/notifications", notifications_create, methods=["POST"], permission=permissions.READ),
    guarded(
        "/notifications/{notification_id}",
        notifications_delete,
        methods=["DELETE"],
        permission=permissions.READ,
    ),
]
