"""`GET {api}/changes/stream`: the caller's change feed as server-sent events, for the portal
(a browser's EventSource) and other live views.

Each change is one event: `id:` its sequence number, `event:` its type, `data:` the change as
JSON (as in `GET {api}/changes`). A reconnecting EventSource sends `Last-Event-ID` and
resumes after it (or pass `after=`, or `after=latest` for only what happens from now on);
`type=` filters. The same Scope rules as the feed apply,
in SQL. A comment line every 15 s keeps proxies from closing an idle stream. The stream ends
within `RECHECK_SECONDS` of its credentials being revoked (logout, a revoked key, a disabled
user, a password change; tessera.dicomweb.live_credentials).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessera.auth import permissions
from tessera.dicomweb.context import archive_of, identity_of, scope_of
from tessera.dicomweb.errors import BadRequest
from tessera.dicomweb.events_http import int_param
from tessera.dicomweb.gate import guarded
from tessera.dicomweb.live_credentials import RECHECK_SECONDS, CredentialWatch
from tessera.index import changes

HEARTBEAT_SECONDS = 15.0
BATCH = 200


async def changes_stream(request: Request) -> Response:
    scope = await scope_of(request)
    # `after=latest`: only what happens from now on (a live view, not the history).
    latest = request.query_params.get("after") == "latest"
    after = 0 if latest else int_param(request, "after", 0, 0, 2**62)
    last_event_id = request.headers.get("last-event-id")
    if last_event_id:
        if not last_event_id.isdigit():
            raise BadRequest("'Last-Event-ID' must be a sequence number")
        after, latest = int(last_event_id), False
    kinds = [k for k in request.query_params.get("type", "").split(",") if k]
    unknown = sorted(set(kinds) - changes.KINDS)
    if unknown:
        raise BadRequest(f"unknown change type {unknown[0]!r}")
    database = archive_of(request).database
    watcher = request.app.state.change_watcher
    # The stream ends soon after its credentials are revoked (and follows a changed Scope).
    credentials = CredentialWatch(database, identity_of(request), scope)

    def fetch(position: int) -> tuple[int, list[changes.Change]]:
        with database.read() as conn:
            mark = changes.last_seq(conn, scope.tenant_id)
            return mark, changes.read_changes(conn, credentials.scope, position, BATCH, kinds)

    def now() -> int:
        with database.read() as conn:
            return changes.last_seq(conn, scope.tenant_id)

    async def events() -> AsyncIterator[bytes]:
        position = await asyncio.to_thread(now) if latest else after
        yield b"retry: 2000\n\n"
        quiet_since = time.monotonic()
        while True:
            if await credentials.current() is None:
                return
            mark, found = await asyncio.to_thread(fetch, position)
            for change in found:
                position = change.seq
                yield (
                    f"id: {change.seq}\nevent: {change.kind}\ndata: ".encode()
                    + orjson.dumps(change.public())
                    + b"\n\n"
                )
            if found:
                quiet_since = time.monotonic()
            if len(found) == BATCH:
                continue
            if await request.is_disconnected():
                return
            # Wake at least every RECHECK_SECONDS to re-check the credentials.
            if await watcher.wait_past(scope.tenant_id, mark, RECHECK_SECONDS):
                continue
            if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


routes = [guarded("/changes/stream", changes_stream, methods=["GET"], permission=permissions.READ)]
