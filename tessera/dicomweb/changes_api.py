"""`GET {api}/changes?after=SEQ&limit=N&wait=S`: the tenant's change feed, as the caller may
see it (source lock applied in SQL), oldest first, with long-polling.

The answer is `{"changes": [...], "next": SEQ}`: resume with `after=next`. `next` is the
sequence number of the last change returned (or `after` when none), never a number the
caller could not see. With `wait` (seconds, at most 60), an empty answer is held until a
visible change commits or the time is up.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.dicomweb.api_common import json_answer, read_in_thread
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import BadRequest
from tessera.dicomweb.events_http import int_param
from tessera.dicomweb.gate import guarded
from tessera.index import changes

MAX_LIMIT = 1000
MAX_WAIT_SECONDS = 60


async def changes_list(request: Request) -> Response:
    scope = await scope_of(request)
    after = int_param(request, "after", 0, 0, 2**62)
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    wait = int_param(request, "wait", 0, 0, MAX_WAIT_SECONDS)
    kinds = [k for k in request.query_params.get("type", "").split(",") if k]
    unknown = sorted(set(kinds) - changes.KINDS)
    if unknown:
        raise BadRequest(f"unknown change type {unknown[0]!r}")
    watcher = request.app.state.change_watcher
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait

    def fetch(conn):
        # The counter first: whatever commits after this read moves it past `mark`.
        mark = changes.last_seq(conn, scope.tenant_id)
        return mark, changes.read_changes(conn, scope, after, limit, kinds)

    while True:
        mark, found = await read_in_thread(request, fetch)
        remaining = deadline - loop.time()
        if found or remaining <= 0:
            break
        if await request.is_disconnected():
            break
        await watcher.wait_past(scope.tenant_id, mark, min(remaining, 5.0))
    return json_answer(
        {
            "changes": [change.public() for change in found],
            "next": found[-1].seq if found else after,
        }
    )


routes = [guarded("/changes", changes_list, methods=["GET"], permission=permissions.READ)]
