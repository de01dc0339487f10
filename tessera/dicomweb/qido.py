"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances.

A thin facade: the query string becomes a `tessera.index.query.Query` (see
`qido_params.parse_search`), the index runs it under the caller's Scope, and the results go
out as application/dicom+json. No match is `200 []`. A page cut by `limit` (or by the
server's cap, `TESSERA_QIDO_MAX_RESULTS`) carries `Warning: 299 tessera: "There are
additional results that can be requested"`.
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tessera.auth import permissions
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import problem
from tessera.dicomweb.media_type import (
    DICOM_JSON,
    QualityError,
    parse_media_type,
    quality,
    split_media_ranges,
)
from tessera.dicomweb.qido_params import parse_search
from tessera.dicomweb.urls import dicomweb_root
from tessera.index.query import Level, QueryError
from tessera.index.query_sql import QueryPage, run_query

MORE_RESULTS_WARNING = '299 tessera: "There are additional results that can be requested"'
_ACCEPTABLE = {DICOM_JSON, "application/json", "application/*", "*/*"}


def _acceptable(request: Request) -> bool:
    """Whether Accept allows DICOM JSON; QualityError for a malformed q-value."""
    header = request.headers.get("accept")
    if not header:
        return True
    for media_range in split_media_ranges(header):
        media_type, params = parse_media_type(media_range)
        if media_type in _ACCEPTABLE and quality(params) > 0:
            return True
    return False


async def _search(request: Request, level: Level) -> Response:
    scope = await scope_of(request)
    if not scope.can(permissions.READ):
        return problem(403, "searching needs the 'read' permission")
    try:
        acceptable = _acceptable(request)
    except QualityError as exc:
        return problem(400, f"{exc} in Accept")
    if not acceptable:
        return problem(406, f"QIDO-RS answers in {DICOM_JSON} only")
    try:
        query = parse_search(level, request.url.query, request.path_params)
    except QueryError as exc:
        return problem(400, f"invalid query parameter {exc.parameter!r}: {exc.reason}")
    archive = archive_of(request)
    root = dicomweb_root(request)

    def run() -> QueryPage:
        with archive.database.read() as conn:
            return run_query(conn, scope, query, root, archive.settings.qido_max_results)

    page = await run_in_threadpool(run)
    headers = {"Warning": MORE_RESULTS_WARNING} if page.more else None
    return Response(
        orjson.dumps(page.items),  # the engine builds each object in tag order
        status_code=200,
        media_type=DICOM_JSON,
        headers=headers,
    )


async def search_studies(request: Request) -> Response:
    return await _search(request, Level.STUDY)


async def search_series(request: Request) -> Response:
    return await _search(request, Level.SERIES)


async def search_instances(request: Request) -> Response:
    return await _search(request, Level.INSTANCE)


routes = [
    Route("/studies", search_studies, methods=["GET"]),
    Route("/series", search_series, methods=["GET"]),
    Route("/instances", search_instances, methods=["GET"]),
    Route("/studies/{study}/series", search_series, methods=["GET"]),
    Route("/studies/{study}/instances", search_instances, methods=["GET"]),
    Route("/studies/{study}/series/{series}/instances", search_instances, methods=["GET"]),
]
