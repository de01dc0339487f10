"""WADO-RS Retrieve Bulk Data (PS3.18 §10.4.1.1.5): the targets of the BulkDataURIs in
metadata, /studies/{s}/series/{se}/instances/{i}/bulkdata/{tag} (top-level tags).

The value's position in the stored file is found from its header (pydicom with deferred
values: no large value is read), then only that byte range is read. Range requests
(a single `bytes=` range) are honoured with 206 and a bare application/octet-stream body.
Pixel Data: native pixel data is one octet-stream value; encapsulated pixel data is sent
as its frames, one part per frame in the stored transfer syntax.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessera.dicomweb import caching, multipart_writer
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import ClientError
from tessera.dicomweb.media_type import OCTET_STREAM
from tessera.dicomweb.negotiation import BULK_DATA, acceptable, media_type_for_syntax
from tessera.dicomweb.wado_common import (
    archive_of,
    in_read_transaction,
    instance_path_uids,
    not_acceptable,
    not_found,
)
from tessera.dicomweb.wado_instances import stream_blob
from tessera.index.retrieve import RetrievedInstance, resolve_instance
from tessera.storage.blobstore import BlobStore
from tessera.storage.syntaxes import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, NATIVE

PIXEL_DATA = 0x7FE00010
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_DEFER = 1024


def _value_location(store: BlobStore, item: RetrievedInstance, tag: int) -> tuple[int, int] | bytes:
    """(offset, length) of the element's value in the stored file, or the value itself
    when it is small or the file is deflated (no byte offsets)."""
    deflated = item.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    with store.open(item.blob_key) as fh:
        dataset = pydicom.dcmread(
            fh, defer_size=None if deflated else _DEFER, stop_before_pixels=tag != PIXEL_DATA
        )
        raw = dataset._dict.get(Tag(tag))  # raw element: value not converted yet
        if raw is None:
            raise ClientError(404, f"the instance has no top-level element {tag:08X}")
        if isinstance(raw, RawDataElement) and raw.value is None and not deflated:
            return raw.value_tell, raw.length
        element = dataset[tag]
        value = element.value
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        raise ClientError(404, f"element {tag:08X} is not bulk data (VR {element.VR})")


def _pixel_value_range(item: RetrievedInstance) -> tuple[int, int] | None:
    """Native pixel data with known frames: the contiguous range of all frames."""
    if item.frames and item.transfer_syntax_uid in NATIVE:
        start = item.frames[0][0][0]
        last = item.frames[-1][-1]
        return start, last[0] + last[1] - start
    return None


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single byte range as (start, length); None: serve everything; 416 if unsatisfiable."""
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if not match:
        return None  # multiple or malformed ranges: RFC 9110 lets us send the whole value
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        length = min(int(last), size)
        if length == 0:
            raise ClientError(416, "empty suffix range", {"Content-Range": f"bytes */{size}"})
        return size - length, length
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ClientError(
            416, f"range {header} is outside 0..{size - 1}", {"Content-Range": f"bytes */{size}"}
        )
    return start, end - start + 1


async def retrieve_bulk_data(request: Request) -> Response:
    study, series, instance = instance_path_uids(request)
    text = request.path_params["tag"]
    if not _TAG_RE.match(text):
        raise ClientError(400, f"bulk data tag {text!r} is not 8 hexadecimal digits")
    tag = int(text, 16)
    accept = request.headers.get("accept")
    candidates = acceptable(accept, BULK_DATA)
    if not candidates:
        raise not_acceptable(accept, "bulk data")
    rep = candidates[0]
    scope = await scope_of(request)
    archive = archive_of(request)
    store = archive.blob_store
    item = await in_read_transaction(
        archive,
        lambda conn: resolve_instance(conn, scope, study, series, instance, with_frames=True),
    )
    if item is None:
        raise not_found(study, series, instance)
    etag = caching.entity_tag(item.sha256, text, str(rep.multipart))
    headers = caching.cache_headers(etag, item.created_at)
    if caching.is_not_modified(request, etag, item.created_at):
        return caching.not_modified_response(headers)
    headers["Accept-Ranges"] = "bytes"

    if tag == PIXEL_DATA and item.frames is not None and _pixel_value_range(item) is None:
        return _encapsulated_frames(store, item, headers)
    location: tuple[int, int] | bytes | None = (
        _pixel_value_range(item) if tag == PIXEL_DATA else None
    )
    if location is None:
        location = await run_in_threadpool(_value_location, store, item, tag)
    if isinstance(location, bytes):
        value_bytes: bytes | None = location
        value_offset, size = 0, len(location)
    else:
        value_bytes = None
        value_offset, size = location

    wanted = request.headers.get("range")
    byte_range = _parse_range(wanted, size) if wanted else None
    if byte_range is not None:
        start, length = byte_range
        if value_bytes is not None:
            data = value_bytes[start : start + length]
        else:
            data = await run_in_threadpool(
                store.read_range, item.blob_key, value_offset + start, length
            )
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
        headers["Content-Type"] = OCTET_STREAM
        return Response(data, status_code=206, headers=headers)

    async def value() -> AsyncIterator[bytes]:
        if value_bytes is not None:
            yield value_bytes
            return
        async for chunk in _ranged(store, item.blob_key, value_offset, size):
            yield chunk

    if not rep.multipart:
        headers["Content-Type"] = OCTET_STREAM
        headers["Content-Length"] = str(size)
        return StreamingResponse(value(), headers=headers)
    boundary = multipart_writer.new_boundary()
    headers["Content-Type"] = multipart_writer.content_type(OCTET_STREAM, boundary)

    async def body() -> AsyncIterator[bytes]:
        yield multipart_writer.part_header(boundary, OCTET_STREAM)
        async for chunk in value():
            yield chunk
        yield multipart_writer.PART_END + multipart_writer.closing(boundary)

    return StreamingResponse(body(), headers=headers)


async def _ranged(store: BlobStore, key: str, offset: int, length: int) -> AsyncIterator[bytes]:
    end = offset + length
    step = 1024 * 1024
    while offset < end:
        chunk = await run_in_threadpool(store.read_range, key, offset, min(step, end - offset))
        if not chunk:
            raise OSError(f"blob {key} is shorter than recorded")
        offset += len(chunk)
        yield chunk


def _encapsulated_frames(
    store: BlobStore, item: RetrievedInstance, headers: dict[str, str]
) -> Response:
    """Encapsulated Pixel Data as bulk data: its frames, as stored, one part each."""
    syntax = item.transfer_syntax_uid
    media_type = media_type_for_syntax(syntax)
    boundary = multipart_writer.new_boundary()
    headers["Content-Type"] = multipart_writer.content_type(media_type, boundary)
    head = multipart_writer.part_header(boundary, media_type, syntax)

    async def body() -> AsyncIterator[bytes]:
        for fragments in item.frames or []:
            yield head
            for offset, length in fragments:
                async for chunk in _ranged(store, item.blob_key, offset, length):
                    yield chunk
            yield multipart_writer.PART_END
        yield multipart_writer.closing(boundary)

    return StreamingResponse(body(), headers=headers)


__all__ = ["retrieve_bulk_data", "stream_blob"]
