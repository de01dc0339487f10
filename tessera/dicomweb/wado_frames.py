"""WADO-RS Retrieve Frames (PS3.18 §10.4.1.1.3): /studies/{s}/series/{se}/instances/{i}/frames/{list}.

A frame is read by seeking to its stored (offset, length) fragments, never by loading the
whole Pixel Data. A frame asked for in its stored transfer syntax (or `transfer-syntax=*`)
goes out byte for byte; otherwise it is decoded and re-encoded on its own. Up to
`IN_ONE_GO_BYTES` of frames are read in one worker-thread call (the hot path: one frame
per request, as OHIF asks); more are streamed frame by frame.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessera.archive import Archive
from tessera.dicomweb import caching, frame_source, multipart_writer
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import ClientError
from tessera.dicomweb.grouping import by_size
from tessera.dicomweb.negotiation import (
    AS_STORED,
    FRAMES,
    Representation,
    acceptable,
    target_syntax,
)
from tessera.dicomweb.wado_common import (
    archive_of,
    instance_path_uids,
    not_acceptable,
    not_found,
)
from tessera.index.retrieve import RetrievedInstance, resolve_instance
from tessera.scope import Scope
from tessera.storage import syntaxes
from tessera.storage.blobstore import BlobStore
from tessera.storage.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    NATIVE_LITTLE_ENDIAN,
    can_convert_frames,
)
from tessera.storage.transcode import TranscodeError

log = logging.getLogger(__name__)

IN_ONE_GO_BYTES = 16 * 1024 * 1024
# Frames that need converting: this many are made before the status is sent.
CONVERTED_IN_ONE_GO = 8
MAX_FRAMES_IN_LIST = 100_000


def parse_frame_list(text: str) -> list[int]:
    """'1,3,5' -> [1, 3, 5]; 400 for anything but positive integers."""
    numbers: list[int] = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece.isdigit() or int(piece) < 1:
            raise ClientError(
                400, f"frame list {text!r}: frame numbers are positive integers (1 is the first)"
            )
        numbers.append(int(piece))
    if len(numbers) > MAX_FRAMES_IN_LIST:
        raise ClientError(400, f"frame list longer than {MAX_FRAMES_IN_LIST}")
    return numbers


@dataclass
class FramePlan:
    item: RetrievedInstance
    numbers: list[int]
    rep: Representation
    syntax: str
    etag: str
    headers: dict[str, str]

    @property
    def converting(self) -> bool:
        return (
            not syntaxes.passes_through(self.item.transfer_syntax_uid, self.syntax)
            or self.item.frames is None
        )

    @property
    def part_media_type(self) -> str:
        return self.rep.media_type


def produce_frame(store: BlobStore, plan: FramePlan, number: int) -> bytes:
    if not plan.converting:
        return frame_source.stored_frame(store, plan.item, number)
    return frame_source.converted_frame(store, plan.item, number, plan.syntax)


def _plan(
    archive: Archive,
    scope: Scope,
    uids: tuple[str, str, str],
    numbers: list[int],
    candidates: list[Representation],
    accept: str | None,
) -> FramePlan:
    with archive.database.read() as conn:
        item = resolve_instance(conn, scope, *uids, with_frames=True)
    if item is None:
        raise not_found(*uids)
    if item.frames is None and item.pixel_data_vr is None:
        raise ClientError(404, f"instance {uids[2]} has no Pixel Data, so no frames")
    count = item.frame_count
    beyond = [n for n in numbers if n > count]
    if beyond:
        raise ClientError(
            404, f"frame {beyond[0]} does not exist (the instance has {count} frame(s))"
        )
    choice = target_syntax(candidates, item.transfer_syntax_uid, can_convert_frames)
    if choice is None:
        raise not_acceptable(accept, f"frames stored as {item.transfer_syntax_uid}")
    rep, syntax = choice
    if item.frames is None and syntax in NATIVE_LITTLE_ENDIAN:
        syntax = EXPLICIT_VR_LITTLE_ENDIAN  # decoded from the whole object: plain native bytes
    if item.frames is None and not can_convert_frames(item.transfer_syntax_uid, syntax):
        raise not_acceptable(accept, "frames that must be decoded from the whole object")
    if not rep.multipart and len(numbers) != 1:
        raise ClientError(406, "a bare media type holds one frame; ask for multipart/related")
    if not syntaxes.passes_through(item.transfer_syntax_uid, syntax) or item.frames is None:
        # The codecs need the pixel description: fetch the stored metadata too (rare path).
        with archive.database.read() as conn:
            item = resolve_instance(conn, scope, *uids, with_frames=True, with_metadata=True)
        if item is None:
            raise not_found(*uids)
    etag = caching.entity_tag(
        item.sha256, ",".join(map(str, numbers)), rep.media_type, syntax, str(rep.multipart)
    )
    headers = caching.cache_headers(etag, item.created_at)
    return FramePlan(item, numbers, rep, syntax, etag, headers)


async def retrieve_frames(request: Request) -> Response:
    study, series, instance = instance_path_uids(request)
    numbers = parse_frame_list(request.path_params["frames"])
    accept = request.headers.get("accept")
    candidates = acceptable(accept, FRAMES)
    scope = await scope_of(request)
    archive = archive_of(request)
    store = archive.blob_store
    uids = (study, series, instance)

    def plan_and_read() -> tuple[FramePlan, list[bytes] | None]:
        """Everything up to the first bytes, in one worker-thread call: resolution, and
        the frames themselves when they are few (so a conversion error is still a 406)."""
        plan = _plan(archive, scope, uids, numbers, candidates, accept)
        if caching.is_not_modified(request, plan.etag, plan.item.created_at):
            return plan, None
        if plan.converting:
            first = numbers if len(numbers) <= CONVERTED_IN_ONE_GO else numbers[:1]
            return plan, [produce_frame(store, plan, n) for n in first]
        if _stored_bytes(plan) > IN_ONE_GO_BYTES:
            return plan, []
        return plan, [frame_source.stored_frame(store, plan.item, n) for n in numbers]

    plan, payloads = await run_in_threadpool(plan_and_read)
    headers = plan.headers
    if payloads is None:
        return caching.not_modified_response(headers)
    syntax = plan.syntax
    media_type = plan.part_media_type

    if not plan.rep.multipart:
        headers["Content-Type"] = f"{media_type}; transfer-syntax={syntax}"
        return Response(payloads[0], headers=headers)

    boundary = multipart_writer.new_boundary()
    headers["Content-Type"] = multipart_writer.content_type(media_type, boundary)
    head = multipart_writer.part_header(boundary, media_type, syntax)
    if len(payloads) == len(numbers):
        out = bytearray()
        for data in payloads:
            out += head
            out += data
            out += multipart_writer.PART_END
        out += multipart_writer.closing(boundary)
        return Response(bytes(out), headers=headers)

    async def body() -> AsyncIterator[bytes]:
        for data in payloads:
            yield head + data + multipart_writer.PART_END
        for batch in _batches(plan, numbers[len(payloads) :]):
            try:
                yield await run_in_threadpool(_parts, store, plan, batch, head)
            except TranscodeError as exc:
                # The status is sent already: end the body early; the client sees fewer parts.
                log.warning("frames left out", extra={"frames": batch, "reason": str(exc)})
                break
        yield multipart_writer.closing(boundary)

    return StreamingResponse(body(), headers=headers)


STREAM_BATCH_BYTES = 4 * 1024 * 1024


def _batches(plan: FramePlan, numbers: list[int]) -> list[list[int]]:
    """Consecutive groups of about STREAM_BATCH_BYTES of stored frames: one worker-thread
    call and one write per group instead of per frame (2,000 small frames stream fast)."""
    frames = plan.item.frames
    if plan.converting or frames is None:
        return [[n] for n in numbers]
    return list(
        by_size(numbers, lambda n: sum(length for _, length in frames[n - 1]), STREAM_BATCH_BYTES)
    )


def _parts(store: BlobStore, plan: FramePlan, numbers: list[int], head: bytes) -> bytes:
    out = bytearray()
    for number in numbers:
        out += head
        out += produce_frame(store, plan, number)
        out += multipart_writer.PART_END
    return bytes(out)


def _stored_bytes(plan: FramePlan) -> int:
    frames = plan.item.frames or []
    return sum(length for n in plan.numbers for _, length in frames[n - 1])


__all__ = ["AS_STORED", "parse_frame_list", "retrieve_frames"]
