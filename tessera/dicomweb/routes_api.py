"""`{api}/routes`: a tenant's routing rules, their per-instance deliveries and backlog,
"send this study again" and dead-letter replay. Needs the `admin` permission; a
source-locked administrator sees and makes only rules limited to its sources. The
destination's Authorization header is never returned (only whether one is set).
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.dicomweb.api_common import json_answer, json_body, read_in_thread, write_in_thread
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import BadRequest, NotFound
from tessera.dicomweb.events_http import checked_url, int_param, sources_for, string_list
from tessera.dicomweb.gate import guarded
from tessera.index import routes as rules
from tessera.services.outbound import TargetRefused, resolve_checked

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
AE_RE = re.compile(r"^[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]{0,15}$")
STATUSES = ("pending", "delivered", "dead")


def _ae_title(value: object, name: str) -> str:
    if not isinstance(value, str) or not AE_RE.match(value.strip()):
        raise BadRequest(f"'{name}' must be an AE title (1-16 characters, no backslash)")
    return value.strip()


def _destination(body: dict, request: Request) -> dict:
    destination = body.get("destination")
    if not isinstance(destination, dict):
        raise BadRequest("'destination' is required: {kind: dicomweb|dimse, ...}")
    kind = destination.get("kind")
    settings = archive_of(request).settings
    if kind == "dicomweb":
        url = destination.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequest("'destination.url' (the DICOMweb root) is required")
        checked_url(url, settings)
        authorization = destination.get("authorization") or ""
        if not isinstance(authorization, str) or len(authorization) > 1024:
            raise BadRequest("'destination.authorization' must be a header value")
        return {
            "destination_kind": "dicomweb",
            "destination_url": url,
            "destination_authorization": authorization,
        }
    if kind == "dimse":
        port = destination.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise BadRequest("'destination.port' must be a port number (1-65535)")
        host = destination.get("host")
        if not isinstance(host, str) or not host:
            raise BadRequest("'destination.host' is required")
        try:
            resolve_checked(host, port, settings.outbound_allow_private)
        except TargetRefused as exc:
            raise BadRequest(f"'destination.host' refused: {exc}") from None
        return {
            "destination_kind": "dimse",
            "ae_title": _ae_title(destination.get("ae_title"), "destination.ae_title"),
            "host": host,
            "port": port,
            "calling_ae_title": _ae_title(
                destination.get("calling_ae_title") or "TESSERA", "destination.calling_ae_title"
            ),
        }
    raise BadRequest("'destination.kind' is 'dicomweb' or 'dimse'")


async def _public(request: Request, rule: rules.Rule) -> dict:
    scope = await scope_of(request)
    counts = await read_in_thread(request, lambda conn: rules.backlog(conn, scope, rule))
    return {**rule.public(), "backlog": counts}


async def routes_list(request: Request) -> Response:
    scope = await scope_of(request)

    def work(conn):
        return [
            {**rule.public(), "backlog": rules.backlog(conn, scope, rule)}
            for rule in rules.list_rules(conn, scope)
        ]

    return json_answer(await read_in_thread(request, work))


async def routes_create(request: Request) -> Response:
    scope = await scope_of(request)
    body = await json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest("'name' is 1-64 letters, digits, '.', '_' or '-'")
    trigger = body.get("trigger", "instance")
    if trigger not in rules.TRIGGERS:
        raise BadRequest(f"'trigger' is one of {', '.join(rules.TRIGGERS)}")
    conditions = body.get("conditions") or {}
    if not isinstance(conditions, dict):
        raise BadRequest("'conditions' must be an object (sources, modalities)")
    extra = sorted(set(conditions) - {"sources", "modalities"})
    if extra:
        raise BadRequest(f"unknown condition {extra[0]!r} (sources, modalities)")
    modalities = [m.upper() for m in string_list(conditions, "modalities")]
    values = await run_in_threadpool(_destination, body, request)
    values.update(trigger=trigger, modalities=",".join(modalities))

    def work(conn):
        keys = sources_for(conn, scope, string_list(conditions, "sources"))
        return rules.create_rule(conn, scope, name, values, keys)

    rule = await write_in_thread(request, work)
    return json_answer(await _public(request, rule), 201)


async def routes_get(request: Request) -> Response:
    scope = await scope_of(request)
    name = request.path_params["name"]
    rule = await read_in_thread(request, lambda conn: rules.get_rule(conn, scope, name))
    return json_answer(await _public(request, rule))


async def routes_delete(request: Request) -> Response:
    scope = await scope_of(request)
    name = request.path_params["name"]
    await write_in_thread(request, lambda conn: rules.delete_rule(conn, scope, name))
    return Response(status_code=204)


async def routes_deliveries(request: Request) -> Response:
    scope = await scope_of(request)
    name = request.path_params["name"]
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"'status' is one of {', '.join(STATUSES)}")
    study = request.query_params.get("study") or None
    limit = int_param(request, "limit", 100, 1, 1000)
    before = request.query_params.get("before")
    before_id = int_param(request, "before", 0, 1, 2**62) if before else None
    found = await read_in_thread(
        request,
        lambda conn: rules.list_deliveries(conn, scope, name, status, study, limit, before_id),
    )
    return json_answer(found)


async def routes_send_study(request: Request) -> Response:
    scope = await scope_of(request)
    name = request.path_params["name"]
    body = await json_body(request)
    study = body.get("study_instance_uid")
    if not isinstance(study, str) or not study:
        raise BadRequest("'study_instance_uid' is required")
    count = await write_in_thread(
        request, lambda conn: rules.send_study_again(conn, scope, name, study)
    )
    if count == 0:
        raise NotFound(f"no study {study} to send")
    return json_answer({"queued": count}, 202)


async def routes_send_delivery(request: Request) -> Response:
    """One delivered or dead instance sent again (back to pending, attempts from 0); 202 with
    the delivery. 404 for a delivery the caller cannot see, 409 while it is still pending."""
    scope = await scope_of(request)
    name = request.path_params["name"]
    raw = request.path_params["delivery"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"no delivery {raw!r} of route {name!r}")
    delivery = await write_in_thread(
        request, lambda conn: rules.send_delivery_again(conn, scope, name, int(raw))
    )
    return json_answer(delivery, 202)


async def routes_replay(request: Request) -> Response:
    scope = await scope_of(request)
    name = request.path_params["name"]
    count = await write_in_thread(request, lambda conn: rules.replay_dead(conn, scope, name))
    return json_answer({"replayed": count})


routes = [
    guarded("/routes", routes_list, methods=["GET"], permission=permissions.ADMIN),
    guarded("/routes", routes_create, methods=["POST"], permission=permissions.ADMIN),
    guarded("/routes/{name}", routes_get, methods=["GET"], permission=permissions.ADMIN),
    guarded("/routes/{name}", routes_delete, methods=["DELETE"], permission=permissions.ADMIN),
    guarded(
        "/routes/{name}/deliveries",
        routes_deliveries,
        methods=["GET"],
        permission=permissions.ADMIN,
    ),
    guarded(
        "/routes/{name}/send", routes_send_study, methods=["POST"], permission=permissions.ADMIN
    ),
    guarded(
        "/routes/{name}/deliveries/{delivery}/send",
        routes_send_delivery,
        methods=["POST"],
        permission=permissions.ADMIN,
    ),
    guarded("/routes/{name}/replay", routes_replay, methods=["POST"], permission=permissions.ADMIN),
]
