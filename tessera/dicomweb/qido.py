"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances.

A thin facade: the query string becomes a `tessera.index.query.Query` (see
`qido_params.parse_search`), the index runs it under the caller's Scope, and the results go
out as application/dicom+json. No match is `200 []`. A page cut by `limit` (or by the
server's cap, `TESSERA_QIDO_MAX_RESULTS`) carries `Warning: 299 tessera: "There are
additional results that can be requested"`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tessera.auth.permissions import READ
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import BadRequest, NotAcceptable
from tessera.dicomweb.gate import AUDIT_QUERY, guarded
from tessera.dicomweb.media_type import (
    DICOM_JSON,
    QualityError,
    json_answer_type,
)
from tessera.dicomweb.qido_params import parse_search, requested_sources
from tessera.dicomweb.urls import dicomweb_root
from tessera.index.query import Level
from tessera.index.query_sql import QueryPage, run_query
from tessera.index.sources import within_sources

MORE_RESULTS_WARNING = '299 tessera: "There are additional results that can be requested"'


async def _search(request: Request, level: Level) -> Response:
    scope = await scope_of(request)
    try:
        answer_type = json_answer_type(request.headers.get("accept"))
    except QualityError as exc:
        raise BadRequest(f"{exc} in Accept") from exc
    if answer_type is None:
        raise NotAcceptable(f"QIDO-RS answers in {DICOM_JSON} (or application/json) only")
    query = parse_search(level, request.url.query, request.path_params)  # QueryError: 400
    sources = requested_sources(request.url.query)
    archive = archive_of(request)
    root = dicomweb_root(request)

    def run() -> QueryPage:
        with archive.database.read() as conn:
            narrowed = scope if sources is None else within_sources(conn, scope, sources)
            return run_query(conn, narrowed, query, root, archive.settings.qido_max_results)

    page = await run_in_threadpool(run)
    headers = {"Warning": MORE_RESULTS_WARNING} if page.more else None
    return Response(
        orjson.dumps(page.items),  # the engine builds each object in tag order
        status_code=200,
        media_type=answer_type,
        headers=headers,
    )


async def search_studies(request: Request) -> Response:
    return await _search(request, Level.STUDY)


async def search_series(request: Request) -> Response:
    return await _search(request, Level.SERIES)


async def search_instances(request: Request) -> Response:
    return await _search(request, Level.INSTANCE)


def _search_route(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
    return guarded(path, endpoint, methods=["GET"], permission=READ, action=AUDIT_QUERY)


routes = [
    _search_route("/studies", search_studies),
    _search_route("/series", search_series),
    _search_route("/instances", search_instances),
    _search_route("/studies/{study}/series", search_series),
    _search_route("/studies/{study}/instances", search_instances),
    _search_route("/studies/{study}/series/{series}/instances", search_instances),
]
