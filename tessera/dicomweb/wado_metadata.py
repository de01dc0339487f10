"""WADO-RS Retrieve Metadata (PS3.18 §10.4.1.1.2) at study, series and instance level.

Served from the DICOM JSON built at ingest (never by re-reading files), streamed in batches
so the first bytes of a 2,000-instance study go out at once. Stored BulkDataURIs are
relative to the tenant's DICOMweb root; they are made absolute here from the request's own
origin and prefix (X-Forwarded-Proto/Host/Prefix honoured).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessera.dicomweb import caching
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import BadRequest, NotAcceptable
from tessera.dicomweb.media_type import (
    DICOM_JSON,
    QualityError,
    json_answer_type,
)
from tessera.dicomweb.streaming import primed, riding_out
from tessera.dicomweb.urls import dicomweb_root
from tessera.dicomweb.wado_common import (
    archive_of,
    in_read_transaction,
    not_found,
    path_uids,
)
from tessera.index.coercion import coerce_json, coercion_tag
from tessera.index.retrieve import metadata_by_pk, resolve_instances

_BULK_KEY = b'"BulkDataURI":"'
# Small responses are built in one go; larger ones streamed in batches of this many.
BATCH = 250


def absolute_bulk_data_uris(dicom_json: bytes, root: bytes) -> bytes:
    """Prefix every stored (relative) BulkDataURI with the request's DICOMweb root.

    The key pattern only occurs as a real key: a string value containing it would have
    its quotes escaped in JSON."""
    return dicom_json.replace(_BULK_KEY, _BULK_KEY + root)


async def retrieve_metadata(request: Request) -> Response:
    study, series, instance = path_uids(request)
    accept = request.headers.get("accept")
    try:
        answer_type = json_answer_type(accept)
    except QualityError as exc:
        raise BadRequest(f"{exc} in Accept") from exc
    if answer_type is None:
        raise NotAcceptable(
            f"metadata is sent as {DICOM_JSON} (or application/json) only (Accept: {accept})"
        )
    scope = await scope_of(request)
    archive = archive_of(request)
    small = instance is not None
    items = await in_read_transaction(
        archive,
        lambda conn: resolve_instances(conn, scope, study, series, instance, with_metadata=small),
    )
    if not items:
        raise not_found(study, series, instance)
    root = (dicomweb_root(request) + "/").encode()
    # Each instance's coercion (identity changes; an order's values for its source's ones).
    coercions = {i.instance_pk: i.coercion for i in items}
    tags = sorted({coercion_tag(c) for c in coercions.values()})
    etag = caching.entity_tag(root.decode(), [i.sha256 for i in items], tags)
    # A coerced study has no Last-Modified: If-Modified-Since must not hide a correction.
    coerced = any(coercions.values())
    modified = None if coerced else caching.latest(i.created_at for i in items)
    headers = caching.cache_headers(etag, modified, collection=instance is None)
    if caching.is_not_modified(request, etag, modified):
        return caching.not_modified_response(headers)
    headers["Content-Type"] = answer_type

    if small:
        stored = coerce_json(items[0].dicom_json or b"{}", items[0].coercion)
        single = b"[" + absolute_bulk_data_uris(stored, root) + b"]"
        return Response(single, headers=headers)

    pks = [i.instance_pk for i in items]

    async def body() -> AsyncIterator[bytes]:
        first = True
        for start in range(0, len(pks), BATCH):
            wanted = pks[start : start + BATCH]

            async def read(w: list[int] = wanted) -> dict[int, bytes]:
                return await in_read_transaction(
                    archive, lambda conn: metadata_by_pk(conn, scope, w)
                )

            # The first batch is read before the status (a 503 is still possible); the later
            # ones after it, so they wait out a database restart instead of cutting the body.
            batch = await (read() if start == 0 else riding_out(read))
            joined = b",".join(
                coerce_json(batch[pk], coercions[pk]) for pk in wanted if pk in batch
            )
            if not joined:
                continue
            yield (b"[" if first else b",") + absolute_bulk_data_uris(joined, root)
            first = False
        yield b"[]" if first else b"]"

    # The first batch is read before the headers go out: a database that went away since the
    # instances were resolved is still a 503. A later batch waits for it (riding_out).
    return StreamingResponse(await primed(body()), headers=headers)
