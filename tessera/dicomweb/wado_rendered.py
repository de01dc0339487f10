"""WADO-RS Retrieve Rendered and Thumbnail (PS3.18 §10.4.1.1.4, §10.4.1.1.6) and the
rendering half of WADO-URI: consumer images (image/jpeg, image/png, image/gif) made by the
codec stack's renderer (tessera/storage/render.py).

Query parameters (rendered): `accept` (overrides the Accept header, as browsers cannot set
it on an <img>), `window=center,width[,linear|linear-exact|sigmoid]`,
`viewport=vw,vh[,sx,sy,sw,sh]` (the output is scaled to fit vw x vh; the source region
sx,sy,sw,sh is not supported and answers 400), `quality=1..100` (JPEG).
Levels: frame -> that frame (several: multipart/related); instance -> its first frame;
series / study -> one image per instance (first frame each) as multipart/related.
image/gif at instance or frame level: the frames (all by default) as one animated GIF
(cine), at most MAX_GIF_FRAMES. Thumbnails: one small image (at most
THUMBNAIL_SIZE, or the viewport) of the instance, or of the middle instance of the first
series for a series or study.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pydicom
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tessera.dicomweb import caching, frame_source, multipart_writer
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import BadRequest, ClientError
from tessera.dicomweb.media_type import (
    QualityError,
    parse_media_type,
    quality,
    split_media_ranges,
)
from tessera.dicomweb.wado_common import (
    archive_of,
    in_read_transaction,
    not_found,
    path_uids,
)
from tessera.dicomweb.wado_documents import (
    ECG_WAVEFORMS,
    ENCAPSULATED_PDF,
    VIDEO_TRANSFER_SYNTAXES,
    render_document,
    render_ecg,
    render_video,
)
from tessera.index.retrieve import RetrievedInstance, resolve_instances
from tessera.storage.blobstore import BlobStore
from tessera.storage.transcode import TranscodeError

JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
RENDERED_TYPES = (JPEG, PNG, GIF)
THUMBNAIL_SIZE = 128
WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")


@dataclass(frozen=True)
class RenderRequest:
    media_type: str = JPEG
    window_center: float | None = None
    window_width: float | None = None
    window_function: str = "linear"
    viewport_rows: int | None = None
    viewport_columns: int | None = None
    quality: int | None = None

    def key(self) -> str:
        return repr(self)


def choose_media_type(
    accept_param: str | None,
    accept_header: str | None,
    multipart_for: Callable[[str], bool] = lambda media_type: False,
) -> str:
    """The rendered media type: the `accept` query parameter first, then Accept.

    `multipart_for(media_type)` says whether the resource sends that type as
    multipart/related (several images) or as a bare image; a media type is chosen only if the
    client accepts it in that shape (`image/jpeg` is one image, `multipart/related;
    type="image/jpeg"` several, `*/*` either). Nothing acceptable: 406 naming what is.
    """
    asked = accept_param or accept_header or ""
    ranges = split_media_ranges(asked)
    if not ranges:
        return JPEG
    weighted = []
    for order, item in enumerate(ranges):
        media_type, params = parse_media_type(item)
        try:
            q = quality(params)
        except QualityError as exc:
            raise BadRequest(f"{exc} in {item!r}") from exc
        if q == 0:
            continue
        shapes = {False}  # a bare image
        if media_type == "*/*":
            media_type, shapes = JPEG, {False, True}
        elif media_type in ("multipart/related", "multipart/*"):
            media_type, shapes = params.get("type", "").lower() or JPEG, {True}
        if media_type in ("*/*", "image/*"):
            media_type = JPEG
        if media_type in RENDERED_TYPES and multipart_for(media_type) in shapes:
            weighted.append((-q, order, media_type))
    if not weighted:
        available = ", ".join(
            f'multipart/related; type="{t}"' if multipart_for(t) else t for t in RENDERED_TYPES
        )
        raise ClientError(406, f"this resource is rendered as {available} (asked: {asked})")
    return min(weighted)[2]


def _multipart_rule(request: Request) -> Callable[[str], bool]:
    """Which rendered media types the resource asked for sends as multipart/related:
    thumbnails never; series and studies always; an instance when several frames are asked
    for, except as image/gif (one animated image)."""
    if request.url.path.endswith("/thumbnail"):
        return lambda media_type: False
    if request.path_params.get("instance") is None:
        return lambda media_type: True
    frames_text = request.path_params.get("frames")
    several = frames_text is not None and len(frames_text.split(",")) > 1
    return lambda media_type: several and media_type != GIF


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise ClientError(400, f"{what}: {text!r} is not a number") from exc


def _positive_int(text: str, what: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ClientError(400, f"{what}: {text!r} is not a positive integer")
    return int(text)


def parse_render_request(request: Request) -> RenderRequest:
    """Rendered/thumbnail query parameters; 400 naming the bad one."""
    query = request.query_params
    media_type = choose_media_type(
        query.get("accept"), request.headers.get("accept"), _multipart_rule(request)
    )
    center = width = None
    function = "linear"
    if "window" in query:
        pieces = [p.strip() for p in query["window"].split(",")]
        if len(pieces) not in (2, 3):
            raise ClientError(400, "window is center,width[,function]")
        center = _number(pieces[0], "window center")
        width = _number(pieces[1], "window width")
        if width <= 0:
            raise ClientError(400, "window width must be positive")
        if len(pieces) == 3:
            function = pieces[2].lower()
            if function not in WINDOW_FUNCTIONS:
                raise ClientError(400, f"window function is one of {', '.join(WINDOW_FUNCTIONS)}")
    rows = columns = None
    if "viewport" in query:
        pieces = [p.strip() for p in query["viewport"].split(",")]
        if len(pieces) == 6:
            raise ClientError(400, "viewport source regions (sx,sy,sw,sh) are not supported")
        if len(pieces) != 2:
            raise ClientError(400, "viewport is vw,vh")
        columns = _positive_int(pieces[0], "viewport width")
        rows = _positive_int(pieces[1], "viewport height")
    quality = None
    if "quality" in query:
        quality = _positive_int(query["quality"], "quality")
        if quality > 100:
            raise ClientError(400, "quality is 1..100")
    return RenderRequest(media_type, center, width, function, rows, columns, quality)


MAX_GIF_FRAMES = 500


def _render_options(wanted: RenderRequest):
    from tessera.storage.render import RenderError, RenderOptions, Window

    try:
        window = None
        if wanted.window_center is not None and wanted.window_width is not None:
            function = wanted.window_function.upper().replace("-", "_")
            window = Window(wanted.window_center, wanted.window_width, function)
        viewport = None
        if wanted.viewport_columns or wanted.viewport_rows:
            viewport = (wanted.viewport_columns, wanted.viewport_rows)
        return RenderOptions(wanted.media_type, window, viewport, wanted.quality)
    except RenderError as exc:
        raise ClientError(400, str(exc)) from exc


def _header_and_pixel(store: BlobStore, item: RetrievedInstance):
    from tessera.storage.transcode import decoded_description

    # Read from the file, not the index's JSON: palettes and LUTs may be bulk data there.
    with store.open(item.blob_key) as fh:
        header = pydicom.dcmread(fh, stop_before_pixels=True)
    pixel = None
    if item.frames is not None:
        pixel = decoded_description(frame_source.pixel_description(item), item.transfer_syntax_uid)
    return header, pixel


def render(store: BlobStore, item: RetrievedInstance, number: int, wanted: RenderRequest) -> bytes:
    """One frame of one instance as a consumer image."""
    from tessera.storage.render import RenderError, render_frame

    if number > item.frame_count:
        raise ClientError(
            404, f"frame {number} does not exist (the instance has {item.frame_count})"
        )
    options = _render_options(wanted)
    if item.sop_class_uid == ENCAPSULATED_PDF:
        return render_document(store, item, options)
    if item.sop_class_uid in ECG_WAVEFORMS:
        return render_ecg(store, item, options)
    if item.transfer_syntax_uid in VIDEO_TRANSFER_SYNTAXES:
        return render_video(store, item, number, options)
    header, pixel = _header_and_pixel(store, item)
    array = frame_source.decoded_frame(store, item, number)
    try:
        return render_frame(header, array, options, pixel=pixel, frame_index=number - 1)
    except RenderError as exc:
        raise ClientError(400, f"cannot render this image: {exc}") from exc


def render_cine(
    store: BlobStore, item: RetrievedInstance, numbers: list[int], wanted: RenderRequest
) -> bytes:
    """Several frames of one instance as an animated GIF (multi-frame cine)."""
    from tessera.storage.render import RenderError, render_gif

    if len(numbers) > MAX_GIF_FRAMES:
        raise ClientError(400, f"an animated GIF holds at most {MAX_GIF_FRAMES} frames")
    options = _render_options(wanted)
    header, pixel = _header_and_pixel(store, item)
    frames = (frame_source.decoded_frame(store, item, n) for n in numbers)
    try:
        return render_gif(header, frames, options, pixel=pixel)
    except RenderError as exc:
        raise ClientError(400, f"cannot render these frames: {exc}") from exc


async def _resolve(request: Request, with_frames: bool = True) -> list[RetrievedInstance]:
    study, series, instance = path_uids(request)
    scope = await scope_of(request)
    items = await in_read_transaction(
        archive_of(request),
        lambda conn: resolve_instances(
            conn, scope, study, series, instance, with_frames=True, with_metadata=True
        ),
    )
    items = [
        i
        for i in items
        if i.frames is not None
        or i.pixel_data_vr is not None
        or i.sop_class_uid == ENCAPSULATED_PDF
        or i.sop_class_uid in ECG_WAVEFORMS
    ]
    if not items:
        raise not_found(study, series, instance)
    return items


def _image_response(
    request: Request, item: RetrievedInstance, number: int, wanted: RenderRequest, data_key: str
) -> tuple[dict[str, str], bool]:
    etag = caching.entity_tag(item.sha256, str(number), wanted.key(), data_key)
    headers = caching.cache_headers(etag, item.created_at)
    return headers, caching.is_not_modified(request, etag, item.created_at)


async def _one_image(
    request: Request, item: RetrievedInstance, number: int, wanted: RenderRequest, kind: str
) -> Response:
    headers, unchanged = _image_response(request, item, number, wanted, kind)
    if unchanged:
        return caching.not_modified_response(headers)
    data = await run_in_threadpool(render, archive_of(request).blob_store, item, number, wanted)
    headers["Content-Type"] = wanted.media_type
    return Response(data, headers=headers)


async def _cine(
    request: Request, item: RetrievedInstance, numbers: list[int], wanted: RenderRequest
) -> Response:
    beyond = [n for n in numbers if n > item.frame_count]
    if beyond:
        raise ClientError(404, f"frame {beyond[0]} does not exist")
    headers, unchanged = _image_response(
        request, item, 0, wanted, "cine:" + ",".join(map(str, numbers))
    )
    if unchanged:
        return caching.not_modified_response(headers)
    data = await run_in_threadpool(
        render_cine, archive_of(request).blob_store, item, numbers, wanted
    )
    headers["Content-Type"] = GIF
    return Response(data, headers=headers)


async def retrieve_rendered(request: Request) -> Response:
    wanted = parse_render_request(request)
    frames_text = request.path_params.get("frames")
    numbers = None
    if frames_text is not None:
        from tessera.dicomweb.wado_frames import parse_frame_list

        numbers = parse_frame_list(frames_text)
    items = await _resolve(request)
    if request.path_params.get("instance") is not None:
        item = items[0]
        if wanted.media_type == GIF:
            # Cine: the frames asked for (all by default) as one animated image.
            numbers = numbers or list(range(1, item.frame_count + 1))
            return await _cine(request, item, numbers, wanted)
        numbers = numbers or [1]
        if len(numbers) == 1:
            return await _one_image(request, item, numbers[0], wanted, "rendered")
        for number in numbers:
            if number > item.frame_count:
                raise ClientError(404, f"frame {number} does not exist")
        targets = [(item, n) for n in numbers]
    else:
        targets = [(item, 1) for item in items]
    store = archive_of(request).blob_store
    etag = caching.entity_tag(
        [i.sha256 for i, _ in targets], [str(n) for _, n in targets], wanted.key()
    )
    modified = caching.latest(i.created_at for i, _ in targets)
    headers = caching.cache_headers(etag, modified, collection=frames_text is None)
    if caching.is_not_modified(request, etag, modified):
        return caching.not_modified_response(headers)
    boundary = multipart_writer.new_boundary()
    headers["Content-Type"] = multipart_writer.content_type(wanted.media_type, boundary)
    head = multipart_writer.part_header(boundary, wanted.media_type)

    async def body() -> AsyncIterator[bytes]:
        for item, number in targets:
            try:
                image = await run_in_threadpool(render, store, item, number, wanted)
            except (ClientError, TranscodeError):
                continue  # an instance we cannot render (e.g. no pixels) is left out
            yield head + image + multipart_writer.PART_END
        yield multipart_writer.closing(boundary)

    return StreamingResponse(body(), headers=headers)


async def retrieve_thumbnail(request: Request) -> Response:
    wanted = parse_render_request(request)
    if wanted.viewport_rows is None:
        wanted = RenderRequest(
            wanted.media_type,
            wanted.window_center,
            wanted.window_width,
            wanted.window_function,
            THUMBNAIL_SIZE,
            THUMBNAIL_SIZE,
            wanted.quality,
        )
    items = await _resolve(request)
    number = 1
    frames_text = request.path_params.get("frames")
    if frames_text is not None:
        from tessera.dicomweb.wado_frames import parse_frame_list

        number = parse_frame_list(frames_text)[0]
    if request.path_params.get("instance") is not None:
        item = items[0]
    else:
        first_series = [i for i in items if i.series_instance_uid == items[0].series_instance_uid]
        item = first_series[len(first_series) // 2]
        if item.frame_count > 1:
            number = (item.frame_count + 1) // 2
    return await _one_image(request, item, number, wanted, "thumbnail")
