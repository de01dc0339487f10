"""UPS-RS subscriptions and the notification channel (PS3.18 §11.10-11.13, §8.10.4-8.10.5).

    POST   {root}/workitems/{uid}/subscribers/{AETitle}[?deletionlock=]    Subscribe
    POST   {root}/workitems/1.2.840.10008.5.1.4.34.5/subscribers/{AETitle}  Worklist
    POST   {root}/workitems/1.2.840.10008.5.1.4.34.5.1/subscribers/{AETitle}?filter=K=v,...
    DELETE {root}/workitems/{uid | well-known UID}/subscribers/{AETitle}    Unsubscribe
    POST   {root}/workitems/{well-known UID}/subscribers/{AETitle}/suspend  Suspend
    GET    ws(s)://.../{root}/subscribers/{AETitle}                          Notification channel

All need the `read` permission (watching is reading). The channel is a WebSocket admitted
like any request (`access.AccessMiddleware._websocket`); it follows the tenant's change feed
from the moment it opens and sends each Event Report the feed makes for the AE, as the
caller's Scope sees the workitems (`tessera.services.ups_events`), one DICOM JSON dataset
per text frame. Nothing is queued while no channel is open (PS3.18 §8.10.4). The channel is
closed (1008) within `RECHECK_SECONDS` of its credentials being revoked
(tessera.dicomweb.live_credentials).

SCP Status Change (Event Type 4): the first channel of an AE (per tenant) on a server
process starts with RESTARTED (WARM START: subscriptions and workitems are kept in the
index); on a graceful shutdown every open channel gets GOING DOWN and is closed (1001)
(tessera.dicomweb.going_down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from tessera.auth.permissions import READ
from tessera.dicomweb.access import IDENTITY_KEY, SCOPE_KEY
from tessera.dicomweb.api_common import audit_event, write_with_event
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import problem
from tessera.dicomweb.gate import GuardedRoute, GuardedWebSocketRoute, guarded
from tessera.dicomweb.going_down import going_down_event
from tessera.dicomweb.live_credentials import RECHECK_SECONDS, CredentialWatch
from tessera.dicomweb.workitems import run_workitem_call, warning
from tessera.index import changes
from tessera.index.database import Database
from tessera.scope import Scope
from tessera.services import ups_events
from tessera.storage.uids import uid_problem

log = logging.getLogger(__name__)

BATCH = 200
# Offered by a browser beside `bearer.<token>`; the channel answers with it.
SUBPROTOCOL = "dicomweb"


def _resource(request: Request) -> str:
    uid = request.path_params["workitem"]
    if uid_problem(uid):
        raise ups_events.SubscriptionNotFound(f"no workitem {uid[:80]}")
    return uid


def _deletion_lock(request: Request) -> bool:
    value = request.query_params.get("deletionlock", "false").lower()
    if value not in ("true", "false"):
        raise ups_events.InvalidSubscription(
            f"deletionlock must be true or false, not {value[:20]!r}"
        )
    return value == "true"


async def _change(
    request: Request, action: str, work: Callable[[Scope, str, str], Callable], status: int
) -> Response:
    scope = await scope_of(request)

    async def run() -> Response:
        resource = _resource(request)
        ae = request.path_params["aetitle"]
        event = audit_event(request, action, resource, {"ae_title": ae[:16]})
        await write_with_event(request, work(scope, resource, ae), event)
        return Response(status_code=status)

    return await run_workitem_call(run())


async def subscribe(request: Request) -> Response:
    """Subscribe (§11.10): 201. The deletion lock is always granted: workitems are kept."""
    query = request.url.query

    def work(scope: Scope, resource: str, ae: str) -> Callable:
        lock = _deletion_lock(request)
        if resource != ups_events.FILTERED_WORKLIST_UID:
            extra = sorted(set(request.query_params) - {"deletionlock"})
            if extra:
                raise ups_events.InvalidSubscription(
                    f"'{extra[0]}': matching keys belong to the Filtered Worklist "
                    f"({ups_events.FILTERED_WORKLIST_UID}) only"
                )
        return lambda conn: ups_events.subscribe(conn, scope, resource, ae, lock, query)

    return await _change(request, "workitem.subscribe", work, 201)


async def unsubscribe(request: Request) -> Response:
    """Unsubscribe (§11.11): 200."""

    def work(scope: Scope, resource: str, ae: str) -> Callable:
        return lambda conn: ups_events.unsubscribe(conn, scope, resource, ae)

    return await _change(request, "workitem.unsubscribe", work, 200)


async def suspend(request: Request) -> Response:
    """Suspend Global Subscription (§11.12): 200."""

    def work(scope: Scope, resource: str, ae: str) -> Callable:
        return lambda conn: ups_events.suspend(conn, scope, resource, ae)

    return await _change(request, "workitem.suspend", work, 200)


def _next_reports(
    database: Database, scope: Scope, ae: str, position: int
) -> tuple[int, int, list[dict], bool]:
    """(mark, new position, reports, more): the Event Reports of the feed entries after
    `position`; `mark` is the newest sequence number when the read began."""
    with database.read() as conn:
        mark = changes.last_seq(conn, scope.tenant_id)
        found = changes.read_all_changes(
            conn, scope.tenant_id, position, BATCH, ups_events.FEED_KINDS
        )
        reports = [
            report
            for change in found
            for report in ups_events.event_reports(conn, scope, ae, change)
        ]
    more = len(found) == BATCH
    last = found[-1].seq if found else position
    return mark, (last if more else max(last, mark)), reports, more


def _last_seq(database: Database, tenant_id: int) -> int:
    with database.read() as conn:
        return changes.last_seq(conn, tenant_id)


# (tenant, AE) pairs whose channel on this process has been told the server (re)started.
_TOLD_RESTARTED: set[tuple[int, str]] = set()


def first_channel_since_start(tenant_id: int, ae: str) -> bool:
    """Is this the AE's first channel on this server process (it is then told RESTARTED)?"""
    key = (tenant_id, ae)
    if key in _TOLD_RESTARTED:
        return False
    _TOLD_RESTARTED.add(key)
    return True


async def notification_channel(websocket: WebSocket) -> None:
    """Open Notification Connection (§8.10.4) and Send Event Report (§8.10.5)."""
    scope: Scope = websocket.scope[SCOPE_KEY]
    raw_title = websocket.path_params["aetitle"]
    bad = ups_events.ae_title_problem(raw_title)
    if bad:
        detail = f"AE title {raw_title[:40]!r}: {bad}"
        await websocket.send_denial_response(problem(400, detail, warning(detail)))
        return
    ae = raw_title.strip(" ")
    database: Database = websocket.app.state.archive.database
    watcher = websocket.app.state.change_watcher
    # The feed's position before the handshake completes: whatever the client does once
    # connected (subscribe, change a workitem) comes after it.
    position = await asyncio.to_thread(_last_seq, database, scope.tenant_id)
    # The channel closes soon after its credentials are revoked (and follows a changed Scope).
    credentials = CredentialWatch(database, websocket.scope.get(IDENTITY_KEY), scope)
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    # Set when the server shuts down gracefully (tessera.dicomweb.going_down).
    going_down = going_down_event(websocket.scope.setdefault("state", {}))
    message_id = 0

    async def send(report: dict) -> None:
        nonlocal message_id
        message_id = message_id % 65535 + 1
        frame = {"00000110": {"vr": "US", "Value": [message_id]}, **report}
        await websocket.send_text(orjson.dumps(frame).decode())

    async def follow() -> None:
        nonlocal position
        if first_channel_since_start(scope.tenant_id, ae):
            await send(ups_events.scp_status_report(ups_events.RESTARTED))
        while True:
            current = await credentials.current()
            if current is None:
                # 1008 Policy Violation: the client should not reconnect with the same token.
                await websocket.close(code=1008, reason="credentials revoked")
                return
            try:
                mark, position, reports, more = await asyncio.to_thread(
                    _next_reports, database, current, ae, position
                )
            except Exception:  # e.g. the index briefly unreachable: the client reconnects
                log.warning("UPS notification channel failed", exc_info=True)
                await websocket.close(code=1011, reason="event reports unavailable")
                return
            for report in reports:
                await send(report)
            if not more:  # wake at least every RECHECK_SECONDS to re-check the credentials
                await watcher.wait_past(scope.tenant_id, mark, RECHECK_SECONDS)

    async def listen() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # the channel carries nothing from the user agent

    tasks = [
        asyncio.create_task(follow()),
        asyncio.create_task(listen()),
        asyncio.create_task(going_down.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
    if going_down.is_set():
        # 1001 Going Away, after SCP Status Change (GOING DOWN): reconnect later.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await send(ups_events.scp_status_report(ups_events.GOING_DOWN))
            await websocket.close(code=1001, reason="server going down")


def _route(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str
) -> GuardedRoute:
    return guarded(path, endpoint, methods=[method], permission=READ)


SUBSCRIBER = "/workitems/{workitem}/subscribers/{aetitle}"
routes = [
    _route(SUBSCRIBER, subscribe, "POST"),
    _route(SUBSCRIBER, unsubscribe, "DELETE"),
    _route(SUBSCRIBER + "/suspend", suspend, "POST"),
    GuardedWebSocketRoute("/subscribers/{aetitle}", notification_channel, permission=READ),
]
