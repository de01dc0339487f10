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
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import ClientError
from tessera.dicomweb.media_type import DICOM
from tessera.dicomweb.negotiation import Representation, target_syntax
from tessera.dicomweb.wado_common import (
    archive_of,
    in_read_transaction,
    not_found,
)
from tessera.dicomweb.wado_instances import single_instance_response
from tessera.dicomweb.wado_rendered import render
from tessera.dicomweb.wado_uri_params import WadoUriRequest, parse_wado_uri
from tessera.index.coercion import coercion_tag
from tessera.index.retrieve import RetrievedInstance, resolve_instance
from tessera.storage.blobstore import BlobStore
from tessera.storage.syntaxes import can_convert


async def wado_uri(request: Request) -> Response:
    wanted = parse_wado_uri(request.query_params)
    scope = await scope_of(request)
    archive = archive_of(request)
    item = await in_read_transaction(
        archive,
        lambda conn: resolve_instance(
            conn,
            scope,
            wanted.study,
            wanted.series,
            wanted.instance,
            with_frames=True,
            with_metadata=not wanted.wants_dicom,
        ),
    )
    if item is None:
        raise not_found(wanted.study, wanted.series, wanted.instance)
    if wanted.wants_dicom:
        return await _dicom_response(request, archive.blob_store, item, wanted)
    return await _image_response(request, archive.blob_store, item, wanted)


async def _dicom_response(
    request: Request, store: BlobStore, item: RetrievedInstance, wanted: WadoUriRequest
) -> Response:
    """The instance as a Part 10 file, in the requested (or default) transfer syntax."""
    requested = wanted.transfer_syntax
    choice = target_syntax(
        [Representation(DICOM, requested, False)], item.transfer_syntax_uid, can_convert
    )
    if choice is None:
        raise ClientError(406, f"cannot send this instance in transfer syntax {requested}")
    syntax = choice[1]
    etag = caching.entity_tag(item.sha256, "wado-uri", syntax, coercion_tag(item.coercion))
    # A coerced study has no Last-Modified: If-Modified-Since must not hide a correction.
    modified = None if item.coercion else item.created_at
    headers = caching.cache_headers(etag, modified)
    if caching.is_not_modified(request, etag, modified):
        return caching.not_modified_response(headers)
    headers["Content-Type"] = DICOM
    headers["Content-Disposition"] = f'attachment; filename="{item.sop_instance_uid}.dcm"'
    return await single_instance_response(archive_of(request), item, syntax, headers)


async def _image_response(
    request: Request, store: BlobStore, item: RetrievedInstance, wanted: WadoUriRequest
) -> Response:
    """One frame rendered as JPEG or PNG."""
    number, rendering = wanted.frame_number, wanted.rendering
    assert rendering is not None  # parse_wado_uri sets it for image content types
    if number > item.frame_count:
        raise ClientError(
            404, f"frame {number} does not exist (the instance has {item.frame_count})"
        )
    etag = caching.entity_tag(item.sha256, "wado-uri", str(number), rendering.key())
    headers = caching.cache_headers(etag, item.created_at)
    if caching.is_not_modified(request, etag, item.created_at):
        return caching.not_modified_response(headers)
    data = await run_in_threadpool(render, store, item, number, rendering)
    headers["Content-Type"] = wanted.content_type
    return Response(data, headers=headers)
