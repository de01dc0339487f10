"""WADO-URI (PS3.18 §9): GET {root}/wado?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..

Parameters: contentType (a comma-separated list in preference order: application/dicom,
image/jpeg (the default), image/png), transferSyntax (with application/dicom; default
Explicit VR Little Endian, `*` for as stored), frameNumber, windowCenter + windowWidth,
rows / columns, imageQuality. `anonymize`, `region`, `annotation`, `presentationUID` are
not supported and answer 400 rather than being silently ignored.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.dicomweb import caching
from tessera.dicomweb.media_type import DICOM
from tessera.dicomweb.negotiation import Representation, target_syntax
from tessera.dicomweb.wado_common import (
    WadoError,
    archive_of,
    in_read_transaction,
    not_found,
    reader_scope,
    wado_endpoint,
)
from tessera.dicomweb.wado_instances import single_instance_response
from tessera.dicomweb.wado_rendered import JPEG, PNG, RenderRequest, render
from tessera.index.retrieve import resolve_instance
from tessera.storage.syntaxes import can_convert
from tessera.storage.uids import uid_problem

_UNSUPPORTED = ("anonymize", "region", "annotation", "presentationUID", "presentationSeriesUID")
_UIDS = {"studyUID": "study", "seriesUID": "series", "objectUID": "instance"}


def _int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise WadoError(400, f"{name} must be a positive integer (got {value!r})")
    return int(value)


def _float_param(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise WadoError(400, f"{name} must be a number (got {value!r})") from exc


async def _wado_uri(request: Request) -> Response:
    query = request.query_params
    if query.get("requestType") != "WADO":
        raise WadoError(400, "requestType=WADO is required")
    uids: dict[str, str] = {}
    for name in _UIDS:
        value = query.get(name)
        reason = uid_problem(value)
        if reason:
            raise WadoError(400, f"{name} is {reason}")
        uids[name] = value  # type: ignore[assignment]
    for name in _UNSUPPORTED:
        if name in query:
            raise WadoError(400, f"the {name} parameter is not supported")
    wanted_types = [
        t.split(";")[0].strip().lower() for t in (query.get("contentType") or JPEG).split(",")
    ]
    wanted_types = [t for t in wanted_types if t]
    content_type = next(
        (t for t in wanted_types if t in (DICOM, JPEG, PNG, "*/*", "image/*")), None
    )
    if content_type is None:
        raise WadoError(
            406, f"contentType {query.get('contentType')!r}: use {DICOM}, {JPEG} or {PNG}"
        )
    if content_type in ("*/*", "image/*"):
        content_type = JPEG
    scope = await reader_scope(request)
    archive = archive_of(request)
    item = await in_read_transaction(
        archive,
        lambda conn: resolve_instance(
            conn,
            scope,
            uids["studyUID"],
            uids["seriesUID"],
            uids["objectUID"],
            with_frames=True,
            with_metadata=content_type != DICOM,
        ),
    )
    if item is None:
        raise not_found(uids["studyUID"], uids["seriesUID"], uids["objectUID"])
    store = archive.blob_store

    if content_type == DICOM:
        for name in ("frameNumber", "windowCenter", "windowWidth", "rows", "columns"):
            if name in query:
                raise WadoError(400, f"{name} applies to image content types only")
        requested = query.get("transferSyntax") or None
        if requested is not None and requested != "*" and uid_problem(requested):
            raise WadoError(400, f"transferSyntax is {uid_problem(requested)}")
        choice = target_syntax(
            [Representation(DICOM, requested, False)], item.transfer_syntax_uid, can_convert
        )
        if choice is None:
            raise WadoError(406, f"cannot send this instance in transfer syntax {requested}")
        syntax = choice[1]
        etag = caching.entity_tag(item.sha256, "wado-uri", syntax)
        headers = caching.cache_headers(etag, item.created_at)
        if caching.is_not_modified(request, etag, item.created_at):
            return caching.not_modified_response(headers)
        headers["Content-Type"] = DICOM
        headers["Content-Disposition"] = f'attachment; filename="{item.sop_instance_uid}.dcm"'
        return await single_instance_response(store, item, syntax, headers)

    if "transferSyntax" in query:
        raise WadoError(400, "transferSyntax applies to application/dicom only")
    center = _float_param(query.get("windowCenter"), "windowCenter")
    width = _float_param(query.get("windowWidth"), "windowWidth")
    if (center is None) != (width is None):
        raise WadoError(400, "windowCenter and windowWidth go together")
    if width is not None and width <= 0:
        raise WadoError(400, "windowWidth must be positive")
    number = _int_param(query.get("frameNumber"), "frameNumber") or 1
    if number > item.frame_count:
        raise WadoError(404, f"frame {number} does not exist (the instance has {item.frame_count})")
    quality = _int_param(query.get("imageQuality"), "imageQuality")
    if quality is not None and quality > 100:
        raise WadoError(400, "imageQuality is 1..100")
    rows = _int_param(query.get("rows"), "rows")
    columns = _int_param(query.get("columns"), "columns")
    wanted = RenderRequest(content_type, center, width, "linear", rows, columns, quality)
    etag = caching.entity_tag(item.sha256, "wado-uri", str(number), wanted.key())
    headers = caching.cache_headers(etag, item.created_at)
    if caching.is_not_modified(request, etag, item.created_at):
        return caching.not_modified_response(headers)
    data = await run_in_threadpool(render, store, item, number, wanted)
    headers["Content-Type"] = content_type
    return Response(data, headers=headers)


wado_uri = wado_endpoint(_wado_uri)
