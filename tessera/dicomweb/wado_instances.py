"""WADO-RS Retrieve Study / Series / Instance (PS3.18 §10.4.1.1.1): stored objects as
multipart/related; type="application/dicom", streamed part by part from the blob store.

An instance sent in its stored transfer syntax is copied in 1 MiB chunks (memory stays
bounded whatever the study size); one needing another syntax is transcoded on its own,
one instance at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessera.dicomweb import caching, multipart_writer
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import ClientError
from tessera.dicomweb.grouping import by_size
from tessera.dicomweb.media_type import DICOM
from tessera.dicomweb.negotiation import INSTANCES, acceptable, target_syntax
from tessera.dicomweb.streaming import primed
from tessera.dicomweb.wado_common import (
    archive_of,
    in_read_transaction,
    not_acceptable,
    not_found,
    path_uids,
)
from tessera.index.coercion import coerce_part10, coercion_tag
from tessera.index.retrieve import RetrievedInstance, resolve_instances
from tessera.storage.blobstore import BlobStore
from tessera.storage.syntaxes import can_convert
from tessera.storage.transcode import TranscodeError, transcode_instance

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


async def stream_blob(store: BlobStore, key: str, size: int) -> AsyncIterator[bytes]:
    """The blob's bytes in CHUNK pieces, read in a worker thread."""
    offset = 0
    while offset < size:
        chunk = await run_in_threadpool(store.read_range, key, offset, min(CHUNK, size - offset))
        if not chunk:
            raise OSError(f"blob {key} is shorter than recorded")
        offset += len(chunk)
        yield chunk


def as_stored(item: RetrievedInstance, syntax: str) -> bool:
    """The stored bytes go out unchanged: the stored syntax, no coercion (identity changes)."""
    return syntax == item.transfer_syntax_uid and not item.coercion


async def single_instance_response(
    store: BlobStore, item: RetrievedInstance, syntax: str, headers: dict[str, str]
) -> Response:
    """One instance as a bare application/dicom body: streamed as stored when `syntax` is
    the stored one (and nothing is coerced), else transcoded / coerced whole (406 when that
    cannot be done)."""
    if as_stored(item, syntax):
        headers["Content-Length"] = str(item.size_bytes)
        return StreamingResponse(
            await primed(stream_blob(store, item.blob_key, item.size_bytes)), headers=headers
        )
    try:
        data = await run_in_threadpool(transcoded_instance, store, item, syntax)
    except TranscodeError as exc:
        raise ClientError(406, f"cannot send this instance in {syntax}: {exc}") from exc
    return Response(data, headers=headers)


def transcoded_instance(store: BlobStore, item: RetrievedInstance, target: str) -> bytes:
    """The whole instance in another transfer syntax (one instance in memory at a time),
    with the study's coerced attributes (tessera.index.coercion)."""
    with store.open(item.blob_key) as fh:
        data = transcode_instance(fh, target) if target != item.transfer_syntax_uid else fh.read()
    try:
        return coerce_part10(data, item.coercion)
    except Exception as exc:  # pydicom raises many types for a file it cannot rewrite
        raise TranscodeError(f"cannot apply the corrected patient attributes: {exc}") from exc


async def retrieve_instances(request: Request) -> Response:
    study, series, instance = path_uids(request)
    accept = request.headers.get("accept")
    candidates = acceptable(accept, INSTANCES)
    scope = await scope_of(request)
    archive = archive_of(request)
    items = await in_read_transaction(
        archive, lambda conn: resolve_instances(conn, scope, study, series, instance)
    )
    if not items:
        raise not_found(study, series, instance)
    plan: list[tuple[RetrievedInstance, str, bool]] = []
    for item in items:
        choice = target_syntax(candidates, item.transfer_syntax_uid, can_convert)
        if choice is None:
            continue
        rep, syntax = choice
        plan.append((item, syntax, rep.multipart))
    if not plan:
        raise not_acceptable(accept, "these instances")
    multipart = plan[0][2]
    if not multipart and instance is None:
        raise ClientError(
            406,
            "a bare application/dicom body holds one instance; ask for "
            'multipart/related; type="application/dicom"',
        )

    # A coerced study has no Last-Modified: If-Modified-Since must not hide a correction.
    coerced = any(i.coercion for i, _, _ in plan)
    etag = caching.entity_tag(
        [i.sha256 for i, _, _ in plan],
        [s for _, s, _ in plan],
        "multipart" if multipart else "single",
        sorted({coercion_tag(i.coercion) for i, _, _ in plan}),
    )
    modified = None if coerced else caching.latest(i.created_at for i, _, _ in plan)
    headers = caching.cache_headers(etag, modified, collection=instance is None)
    if caching.is_not_modified(request, etag, modified):
        return caching.not_modified_response(headers)
    skipped = len(items) - len(plan)
    if skipped:
        headers["Warning"] = (
            f'299 tessera "{skipped} instance(s) cannot be sent in the requested transfer '
            'syntax and were left out"'
        )
    store = archive.blob_store

    if not multipart:
        item, syntax, _ = plan[0]
        headers["Content-Type"] = f"{DICOM}; transfer-syntax={syntax}"
        return await single_instance_response(store, item, syntax, headers)

    boundary = multipart_writer.new_boundary()
    syntaxes = {syntax for _, syntax, _ in plan}
    headers["Content-Type"] = multipart_writer.content_type(
        DICOM, boundary, syntaxes.pop() if len(syntaxes) == 1 else None
    )
    heads = [multipart_writer.part_header(boundary, DICOM, syntax) for _, syntax, _ in plan]
    if all(as_stored(item, syntax) for item, syntax, _ in plan):
        # Everything as stored: the length is known before the first byte is read.
        length = sum(len(h) + i.size_bytes + 2 for h, (i, _, _) in zip(heads, plan, strict=True))
        headers["Content-Length"] = str(length + len(multipart_writer.closing(boundary)))

    jobs = _body_jobs(store, plan, heads, boundary)
    return StreamingResponse(await primed(_pipelined(jobs)), headers=headers)


Job = Callable[[], bytes | memoryview]
# As-stored instances are read in groups of about this many bytes: one worker-thread call
# and one socket write per group, not three per instance (a study of 4,000 small CT
# slices is mostly per-call overhead otherwise).
GROUP_BYTES = 4 * 1024 * 1024


def _read_group(store: BlobStore, members: list[tuple[bytes, RetrievedInstance]]) -> memoryview:
    """Several parts in one buffer, each file read straight into its place (one copy)."""
    end = multipart_writer.PART_END
    total = sum(len(head) + item.size_bytes + len(end) for head, item in members)
    buffer = bytearray(total)
    view = memoryview(buffer)
    position = 0
    for head, item in members:
        view[position : position + len(head)] = head
        position += len(head)
        with store.open(item.blob_key) as fh:
            # Both stores' readers implement readinto (BinaryIO's stub lacks it).
            got = fh.readinto(view[position : position + item.size_bytes])  # type: ignore[attr-defined]
        if got != item.size_bytes:
            raise OSError(f"blob {item.blob_key} is shorter than recorded")
        position += item.size_bytes
        view[position : position + len(end)] = end
        position += len(end)
    return view


def _transcoded_part(store: BlobStore, item: RetrievedInstance, syntax: str, head: bytes) -> bytes:
    try:
        data = transcoded_instance(store, item, syntax)
    except TranscodeError as exc:
        # The status is sent already: leave this instance out, keep the others.
        log.warning(
            "instance left out",
            extra={"sop_instance_uid": item.sop_instance_uid, "reason": str(exc)},
        )
        return b""
    return head + data + multipart_writer.PART_END


def _body_jobs(
    store: BlobStore,
    plan: list[tuple[RetrievedInstance, str, bool]],
    heads: list[bytes],
    boundary: str,
) -> Iterator[Job]:
    """The multipart body as a sequence of bounded pieces of work, each making bytes: runs
    of small objects sent as stored are read GROUP_BYTES at a time."""
    parts = [(head, item, syntax) for head, (item, syntax, _) in zip(heads, plan, strict=True)]

    def small_as_stored(part: tuple[bytes, RetrievedInstance, str]) -> bool:
        _, item, syntax = part
        return as_stored(item, syntax) and item.size_bytes <= GROUP_BYTES

    for groupable, run in itertools.groupby(parts, key=small_as_stored):
        if groupable:
            for group in by_size(run, lambda part: part[1].size_bytes, GROUP_BYTES):
                yield partial(_read_group, store, [(head, item) for head, item, _ in group])
            continue
        for head, item, syntax in run:
            if not as_stored(item, syntax):
                yield partial(_transcoded_part, store, item, syntax, head)
                continue
            # A large object: in CHUNK pieces.
            yield partial(bytes, head)
            for offset in range(0, item.size_bytes, CHUNK):
                length = min(CHUNK, item.size_bytes - offset)
                yield partial(store.read_range, item.blob_key, offset, length)
            yield partial(bytes, multipart_writer.PART_END)
    yield partial(multipart_writer.closing, boundary)


async def _pipelined(jobs: Iterator[Job]) -> AsyncIterator[bytes | memoryview]:
    """Run each job in a worker thread while the previous one's bytes are being sent
    (one job ahead: memory stays at about two groups)."""
    pending: asyncio.Future[bytes | memoryview] | None = None
    try:
        for job in jobs:
            started = asyncio.ensure_future(run_in_threadpool(job))
            if pending is not None:
                data = await pending
                if data:
                    yield data
            pending = started
        if pending is not None:
            data = await pending
            pending = None
            if data:
                yield data
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
