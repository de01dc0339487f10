"""What the events REST modules (change feed, webhooks, routes) share: JSON responses,
query/body parsing, and the ONE place their client errors become 4xx answers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.config import Settings
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import problem
from tessera.index.sources import source_pks
from tessera.scope import Scope
from tessera.services.outbound import TargetRefused, check_url


class ClientError(Exception):
    """A request the client can fix (or a resource it cannot see): answered `status`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def bad_request(detail: str) -> ClientError:
    return ClientError(400, detail)


def not_found(detail: str) -> ClientError:
    return ClientError(404, detail)


Handler = Callable[[Request], Awaitable[Response]]


def endpoint(permission: str) -> Callable[[Handler], Handler]:
    """Answer ClientError as its 4xx. `permission` documents what the route declares at the
    gate (`tessera.dicomweb.gate.guarded`), which checks it before the handler runs."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            await scope_of(request)
            try:
                return await handler(request)
            except ClientError as exc:
                return problem(exc.status, exc.detail)

        return run

    return wrap


def json_response(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"'{name}' must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise bad_request(f"'{name}' must be between {low} and {high}, got {value}")
    return value


async def json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def string_list(body: dict, name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"'{name}' must be a list of non-empty strings")
    return value


async def read(request: Request, work: Callable):
    database = archive_of(request).database

    def run():
        with database.read() as conn:
            return work(conn)

    return await run_in_threadpool(run)


async def write(request: Request, work: Callable):
    database = archive_of(request).database

    def run():
        with database.write() as conn:
            return work(conn)

    return await run_in_threadpool(run)


def sources_for(conn, scope: Scope, names: list[str]) -> frozenset[int]:
    """The source keys a subscription or rule of `scope` is limited to. A name the caller
    does not see is answered like an unknown one; a source-locked caller who names none
    gets its own sources (never 'every source')."""
    try:
        found = source_pks(conn, scope.tenant_id, names)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    keys = frozenset(found.values())
    if scope.source_pks is not None:
        hidden = sorted(name for name, key in found.items() if key not in scope.source_pks)
        if hidden:
            raise bad_request(f"unknown source(s): {', '.join(hidden)}")
        return keys or scope.source_pks
    return keys


def checked_url(url: str, settings: Settings) -> str:
    try:
        check_url(url, settings.outbound_allow_private)
    except TargetRefused as exc:
        raise bad_request(f"'url' refused: {exc}") from None
    return url
