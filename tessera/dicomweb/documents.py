"""The documents endpoints: POST {root}/studies/{StudyInstanceUID}/documents (optionally
`?order=ID` or a form field `order`: attach to that open order) and POST
{api}/orders/{id}/documents (a document for an order, before or after its images).

For people and scripts without DICOM know-how: multipart/form-data with a `file` and a
`title` (and optionally `source`, also accepted as a query parameter). The file becomes a
DICOM object in a new series of the study (tessera/services/documents.py); the answer says
what was stored and where to fetch it. See docs/documents.md.
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import BadRequest, ClientError
from tessera.dicomweb.form_data import read_form
from tessera.dicomweb.gate import AUDIT_UPLOAD, guarded
from tessera.dicomweb.urls import dicomweb_root
from tessera.services.documents import (
    DocumentUpload,
    StoredDocument,
    store_document,
    store_order_document,
)
from tessera.services.orders import parse_order_id
from tessera.storage.uids import uid_problem


async def upload_document(request: Request) -> Response:
    study_uid = request.path_params["study"]
    if uid_problem(study_uid):
        raise BadRequest(
            f"StudyInstanceUID in the path is not a valid UID ({uid_problem(study_uid)})"
        )
    return await _receive(request, study_uid)


async def upload_order_document(request: Request) -> Response:
    order_id = parse_order_id(request.path_params["order_id"])  # not a number: 404
    return await _receive(request, None, order_id)


async def _receive(
    request: Request, study_uid: str | None, order_id: int | None = None
) -> Response:
    """Read the form and store its file in `study_uid`, or for `order_id` alone."""
    archive = archive_of(request)
    scope = await scope_of(request)  # `upload` was checked at the gate
    limit = archive.settings.max_document_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 1024 * 1024:
        raise ClientError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    form = await read_form(request, archive.spool_dir, limit)
    try:
        uploaded = form.files.get("file")
        if uploaded is None:
            raise BadRequest("the form has no 'file' field holding the document")
        upload = DocumentUpload(
            path=uploaded.path,
            filename=uploaded.filename,
            declared_type=uploaded.content_type,
            title=form.fields.get("title", ""),
            source=form.fields.get("source") or request.query_params.get("source"),
        )
        stored: StoredDocument
        if study_uid is None:
            assert order_id is not None
            stored = await run_in_threadpool(store_order_document, archive, scope, order_id, upload)
        else:
            named = form.fields.get("order") or request.query_params.get("order")
            stored = await run_in_threadpool(
                store_document,
                archive,
                scope,
                study_uid,
                upload,
                None if named is None else parse_order_id(named),
            )
    finally:
        form.discard()
    outcome = stored.outcome
    url = (
        f"{dicomweb_root(request)}/studies/{outcome.study_instance_uid}/series/"
        f"{outcome.series_instance_uid}/instances/{outcome.sop_instance_uid}"
    )
    body = {
        "StudyInstanceUID": outcome.study_instance_uid,
        "SeriesInstanceUID": outcome.series_instance_uid,
        "SOPInstanceUID": outcome.sop_instance_uid,
        "SOPClassUID": outcome.sop_class_uid,
        "received": stored.kind.value,
        "stored_as": stored.stored_as,
        "RetrieveURL": url,
    }
    return Response(
        orjson.dumps(body),
        status_code=201,
        media_type="application/json",
        headers={"Location": url},
    )


routes = [
    guarded(
        "/studies/{study}/documents",
        upload_document,
        methods=["POST"],
        permission=permissions.UPLOAD,
        action=AUDIT_UPLOAD,
    )
]
# Under {api}, beside the orders API (tessera/dicomweb/orders_api.py).
api_routes = [
    guarded(
        "/orders/{order_id}/documents",
        upload_order_document,
        methods=["POST"],
        permission=permissions.UPLOAD,
        action=AUDIT_UPLOAD,
    )
]
