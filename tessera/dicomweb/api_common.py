"""What the JSON REST APIs ({api}/...) share: reading a JSON body and its fields, answering
JSON, and running index work off the event loop (a change with its audit event in one write
transaction)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth.audit import Event, record_now
from tessera.dicomweb.access import SCOPE_KEY
from tessera.dicomweb.context import archive_of
from tessera.dicomweb.errors import BadRequest

T = TypeVar("T")


def json_answer(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


async def json_body(request: Request, fields: Collection[str] | None = None) -> dict:
    """The request's JSON object. With `fields`, a member not among them is a 400 naming it:
    a misspelt or unsupported setting (e.g. a flag this API does not let one set) must not
    look as if it had been applied."""
    raw = await request.body()
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if fields is not None:
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise BadRequest(
                f"unknown field(s) {', '.join(map(repr, unknown))}; this request takes "
                f"{', '.join(map(repr, fields))}"
            )
    return body


def body_field(body: dict, name: str, kind: type = str, required: bool = True) -> Any:
    """`body[name]` checked to be a `kind` (list: of strings); 400 naming the field if not."""
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required")
        return None
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"'{name}' must be a list of strings")
        return value
    if not isinstance(value, kind):
        raise BadRequest(f"'{name}' must be a {kind.__name__}")
    return value


def audit_event(request: Request, action: str, target: str, detail: dict | None = None) -> Event:
    scope = request.scope[SCOPE_KEY]
    client = request.client
    return Event(
        scope.tenant_id,
        scope.principal,
        action,
        "ok",
        target=target,
        detail=detail or {},
        remote_addr=client.host if client else "",
    )


async def write_with_event(request: Request, work: Callable[[Connection], T], event: Event) -> T:
    """Run `work(conn)` and record `event` in one write transaction."""

    def both(conn: Connection) -> T:
        result = work(conn)
        record_now(conn, [event])
        return result

    return await write_in_thread(request, both)


async def write_in_thread(request: Request, work: Callable[[Connection], T]) -> T:
    """Run `work(conn)` in a write transaction, off the event loop (a change that records no
    audit event of its own: a subscription, a routing rule, a notification)."""
    archive = archive_of(request)

    def run() -> T:
        with archive.database.write() as conn:
            return work(conn)

    return await run_in_threadpool(run)


async def read_in_thread(request: Request, work: Callable[[Connection], T]) -> T:
    """Run `work(conn)` in a read transaction, off the event loop."""
    archive = archive_of(request)

    def run() -> T:
        with archive.database.read() as conn:
            return work(conn)

    return await run_in_threadpool(run)
