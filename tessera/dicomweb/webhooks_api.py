"""`{api}/webhooks`: a tenant's webhook subscriptions, their deliveries and attempts, replay.

Needs the `admin` permission. A source-locked administrator sees and makes only
subscriptions limited to its sources, and only deliveries of changes it may see.
The secret is returned once, when the subscription is created (or given by the caller).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.dicomweb.api_common import json_answer, json_body, read_in_thread, write_in_thread
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import BadRequest, NotFound
from tessera.dicomweb.events_http import checked_url, int_param, sources_for, string_list
from tessera.dicomweb.gate import guarded
from tessera.index import webhooks
from tessera.index.changes import KINDS

STATUSES = ("pending", "delivered", "dead")


def _id(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise NotFound(f"no resource at {request.url.path}") from None


async def webhooks_list(request: Request) -> Response:
    scope = await scope_of(request)
    found = await read_in_thread(request, lambda conn: webhooks.list_subscriptions(conn, scope))
    return json_answer([s.public() for s in found])


async def webhooks_create(request: Request) -> Response:
    scope = await scope_of(request)
    body = await json_body(request)
    url = body.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequest("'url' is required")
    settings = archive_of(request).settings
    await run_in_threadpool(checked_url, url, settings)  # resolves the host name
    event_types = string_list(body, "event_types") or ["*"]
    unknown = sorted(set(event_types) - KINDS - {"*"})
    if unknown:
        raise BadRequest(f"unknown event type {unknown[0]!r} (known: {', '.join(sorted(KINDS))})")
    filters = body.get("filters") or {}
    if not isinstance(filters, dict):
        raise BadRequest("'filters' must be an object (sources, modalities, order_statuses)")
    extra = sorted(set(filters) - {"sources", "modalities", "order_statuses"})
    if extra:
        raise BadRequest(f"unknown filter {extra[0]!r} (sources, modalities, order_statuses)")
    modalities = [m.upper() for m in string_list(filters, "modalities")]
    order_statuses = string_list(filters, "order_statuses")
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > 256:
        raise BadRequest("'description' must be a string of at most 256 characters")
    secret = body.get("secret") or webhooks.new_secret()
    if not isinstance(secret, str) or not secret.startswith("whsec_") or len(secret) > 128:
        raise BadRequest("'secret' must be a Standard Webhooks secret ('whsec_' + base64)")
    try:
        from standardwebhooks.webhooks import Webhook

        Webhook(secret)
    except Exception:
        raise BadRequest("'secret' must be 'whsec_' followed by base64") from None

    def work(conn):
        keys = sources_for(conn, scope, string_list(filters, "sources"))
        return webhooks.create_subscription(
            conn, scope, url, event_types, keys, modalities, order_statuses, description, secret
        )

    created = await write_in_thread(request, work)
    return json_answer({**created.public(), "secret": secret}, 201)


async def webhooks_get(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _id(request, "webhook_id")
    found = await write_in_thread(request, lambda conn: webhooks.get_subscription(conn, scope, pk))
    return json_answer(found.public())


async def webhooks_update(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _id(request, "webhook_id")
    body = await json_body(request)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool) or set(body) != {"enabled"}:
        raise BadRequest("only 'enabled' (true/false) can be changed")

    def work(conn):
        webhooks.set_enabled(conn, scope, pk, enabled)
        return webhooks.get_subscription(conn, scope, pk)

    return json_answer((await write_in_thread(request, work)).public())


async def webhooks_delete(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _id(request, "webhook_id")
    await write_in_thread(request, lambda conn: webhooks.delete_subscription(conn, scope, pk))
    return Response(status_code=204)


async def deliveries_list(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _id(request, "webhook_id")
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"'status' is one of {', '.join(STATUSES)}")
    limit = int_param(request, "limit", 100, 1, 1000)
    before = request.query_params.get("before")
    before_id = int_param(request, "before", 0, 1, 2**62) if before else None
    found = await write_in_thread(
        request,
        lambda conn: webhooks.list_deliveries(conn, scope, pk, status, limit, before_id),
    )
    return json_answer(found)


async def delivery_get(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _id(request, "delivery_id")
    return json_answer(
        await write_in_thread(request, lambda conn: webhooks.get_delivery(conn, scope, pk))
    )


async def delivery_replay(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _id(request, "delivery_id")
    return json_answer(
        await write_in_thread(request, lambda conn: webhooks.replay(conn, scope, pk))
    )


async def webhooks_replay_dead(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _id(request, "webhook_id")
    count = await write_in_thread(request, lambda conn: webhooks.replay_dead(conn, scope, pk))
    return json_answer({"replayed": count})


routes = [
    guarded("/webhooks", webhooks_list, methods=["GET"], permission=permissions.ADMIN),
    guarded("/webhooks", webhooks_create, methods=["POST"], permission=permissions.ADMIN),
    guarded("/webhooks/{webhook_id}", webhooks_get, methods=["GET"], permission=permissions.ADMIN),
    guarded(
        "/webhooks/{webhook_id}", webhooks_update, methods=["PATCH"], permission=permissions.ADMIN
    ),
    guarded(
        "/webhooks/{webhook_id}", webhooks_delete, methods=["DELETE"], permission=permissions.ADMIN
    ),
    guarded(
        "/webhooks/{webhook_id}/deliveries",
        deliveries_list,
        methods=["GET"],
        permission=permissions.ADMIN,
    ),
    guarded(
        "/webhooks/{webhook_id}/replay",
        webhooks_replay_dead,
        methods=["POST"],
        permission=permissions.ADMIN,
    ),
    guarded(
        "/webhook-deliveries/{delivery_id}",
        delivery_get,
        methods=["GET"],
        permission=permissions.ADMIN,
    ),
    guarded(
        "/webhook-deliveries/{delivery_id}/replay",
        delivery_replay,
        methods=["POST"],
        permission=permissions.ADMIN,
    ),
]
