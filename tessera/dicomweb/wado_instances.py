"""WADO-RS Retrieve Study / Series / Instance (PS3.18 §10.4.1.1.1): stored objects as
multipart/related; type="application/dicom", streamed part by part from the blob store.

An instance sent in its stored transfer syntax is copied in 1 MiB chunks (memory stays
bounded whatever the study size); one needing another syntax (or the study's coerced
attributes) is converted on its own, one instance at a time: whole in memory when under
convert_in_memory_max_bytes, else frame by frame (storage/transcode_stream.py) into a file
in the spool folder streamed from there: a named file deleted once sent for a bare
application/dicom body, an unnamed one (gone when closed, or when the client goes away)
holding the whole part in a multipart body.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessera.archive import Archive
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
from tessera.index.coercion import coerce_dataset, coerce_part10, coercion_tag
from tessera.index.retrieve import RetrievedInstance, resolve_instances
from tessera.storage.blobstore import BlobStore
from tessera.storage.syntaxes import can_convert
from tessera.storage.transcode import TranscodeError, transcode_instance
from tessera.storage.transcode_stream import write_instance

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
    archive: Archive, item: RetrievedInstance, syntax: str, headers: dict[str, str]
) -> Response:
    """One instance as a bare application/dicom body: streamed as stored when `syntax` is
    the stored one (and nothing is coerced), else transcoded / coerced (406 when that
    cannot be done): whole in memory when small, written frame by frame to a file in
    the spool folder and streamed from it when of convert_in_memory_max_bytes or more."""
    store = archive.blob_store
    if as_stored(item, syntax):
        headers["Content-Length"] = str(item.size_bytes)
        return StreamingResponse(
            await primed(stream_blob(store, item.blob_key, item.size_bytes)), headers=headers
        )
    if item.size_bytes >= archive.settings.convert_in_memory_max_bytes:
        try:
            path = await run_in_threadpool(transcoded_file, store, item, syntax, archive.spool_dir)
        except TranscodeError as exc:
            raise ClientError(406, f"cannot send this instance in {syntax}: {exc}") from exc
        headers["Content-Length"] = str(path.stat().st_size)
        return StreamingResponse(stream_file(path), headers=headers)
    try:
        data = await run_in_threadpool(transcoded_instance, store, item, syntax)
    except TranscodeError as exc:
        raise ClientError(406, f"cannot send this instance in {syntax}: {exc}") from exc
    return Response(data, headers=headers)


def transcoded_file(
    store: BlobStore, item: RetrievedInstance, target: str, spool_dir: Path | None
) -> Path:
    """The instance in another transfer syntax (and/or with the study's coerced
    attributes) as a temporary file, written frame by frame; the caller deletes it."""
    coercion = item.coercion
    fd, name = tempfile.mkstemp(prefix="wado-", suffix=".tmp", dir=spool_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "w+b", buffering=CHUNK) as out, store.open(item.blob_key) as fh:
            write_instance(
                fh, target, out, (lambda ds: coerce_dataset(ds, coercion)) if coercion else None
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def stream_file(path: Path) -> AsyncIterator[bytes]:
    """A temporary file's bytes in CHUNK pieces; the file is deleted once sent (or when
    the client goes away)."""
    try:
        with open(path, "rb") as fh:
            while chunk := await run_in_threadpool(fh.read, CHUNK):
                yield chunk
    finally:
        path.unlink(missing_ok=True)


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
        return await single_instance_response(archive, item, syntax, headers)

    boundary = multipart_writer.new_boundary()
    syntaxes = {syntax for _, syntax, _ in plan}
    headers["Content-Type"] = multipart_writer.content_type(
        DICOM, boundary, syntaxes.pop() if len(syntaxes) == 1 else None
    )
    heads = [multipart_writer.part_header(boundary, DICOM, syntax) for _, syntax, _ in plan]
    if all(as_stored(item, syntax) for item, syntax, _ in plan):
        # Everything as stored: the length is known before the first byte is read.
        sizes = [item.size_bytes for item, _, _ in plan]
        length = multipart_writer.body_length(boundary, zip(heads, sizes, strict=True))
        headers["Content-Length"] = str(length)

    spool = (max(archive.settings.convert_in_memory_max_bytes, 1), archive.spool_dir)
    jobs = _body_jobs(store, plan, heads, boundary, spool)
    return StreamingResponse(await primed(_pipelined(jobs)), headers=headers)


# A job's bytes, or a spooled part: a file positioned at 0 holding the part's bytes,
# streamed in CHUNK pieces and closed (an unnamed file: closing it frees its space).
Job = Callable[[], bytes | memoryview | BinaryIO]
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


def _spooled_part(
    store: BlobStore, item: RetrievedInstance, syntax: str, head: bytes, spool_dir: Path | None
) -> bytes | BinaryIO:
    """A converted instance's whole part (header, the instance written frame by frame with
    the study's coerced attributes, part end) in an unnamed file in the spool folder;
    b"" when it cannot be converted, as _transcoded_part."""
    coercion = item.coercion
    out = tempfile.TemporaryFile(prefix="wado-", suffix=".tmp", dir=spool_dir)
    try:
        out.write(head)
        with store.open(item.blob_key) as fh:
            write_instance(
                fh, syntax, out, (lambda ds: coerce_dataset(ds, coercion)) if coercion else None
            )
        out.write(multipart_writer.PART_END)
        out.seek(0)
    except TranscodeError as exc:
        out.close()
        log.warning(
            "instance left out",
            extra={"sop_instance_uid": item.sop_instance_uid, "reason": str(exc)},
        )
        return b""
    except BaseException:
        out.close()
        raise
    return out


def _body_jobs(
    store: BlobStore,
    plan: list[tuple[RetrievedInstance, str, bool]],
    heads: list[bytes],
    boundary: str,
    spool: tuple[int, Path | None] = (0, None),
) -> Iterator[Job]:
    """The multipart body as a sequence of bounded pieces of work, each making bytes: runs
    of small objects sent as stored are read GROUP_BYTES at a time; an instance converted
    whose stored size is spool[0] (convert_in_memory_max_bytes) or more goes through a file
    in spool[1] (the spool folder)."""
    spool_from, spool_dir = spool
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
                if spool_from and item.size_bytes >= spool_from:
                    yield partial(_spooled_part, store, item, syntax, head, spool_dir)
                else:
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
    (one job ahead: memory stays at about two groups, or a group and a CHUNK)."""
    pending: asyncio.Future[bytes | memoryview | BinaryIO] | None = None
    try:
        for job in jobs:
            started = asyncio.ensure_future(run_in_threadpool(job))
            if pending is not None:
                data = await pending
                async for piece in _pieces(data):
                    yield piece
            pending = started
        if pending is not None:
            data = await pending
            pending = None
            async for piece in _pieces(data):
                yield piece
    finally:
        if pending is not None:
            # The client went away: a spooled part made after this is closed (its file
            # freed) once the worker thread is done.
            pending.add_done_callback(_close_spooled)
            if not pending.done():
                pending.cancel()


async def _pieces(data: bytes | memoryview | BinaryIO) -> AsyncIterator[bytes | memoryview]:
    if isinstance(data, bytes | memoryview):
        if data:
            yield data
        return
    try:
        while chunk := await run_in_threadpool(data.read, CHUNK):
            yield chunk
    finally:
        data.close()


def _close_spooled(future: asyncio.Future[bytes | memoryview | BinaryIO]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    data = future.result()
    if not isinstance(data, bytes | memoryview):
        data.close()
