"""STOW-RS (PS3.18 §10.5): POST /studies and POST /studies/{StudyInstanceUID}.

The body is parsed as a stream; each part is spooled to disk and ingested as soon as it is
complete, so memory stays bounded whatever the request size. Parts completed before a
truncated body (or a dropped connection) are stored and reported; the incomplete part is
discarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from tessera.auth.permissions import UPLOAD
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import (
    BadRequest,
    ClientError,
    NotAcceptable,
    UnsupportedMediaType,
)
from tessera.dicomweb.gate import AUDIT_UPLOAD, guarded
from tessera.dicomweb.media_type import (
    DICOM_JSON,
    DICOM_XML,
    QualityError,
    json_answer_type,
    parse_media_type,
)
from tessera.dicomweb.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart
from tessera.dicomweb.urls import dicomweb_root
from tessera.services import failure_reasons
from tessera.services.ingest import (
    StoreOutcome,
    UnknownSource,
    ingest_file,
    ingest_files,
    resolve_upload_source,
)
from tessera.services.orders import (
    OrderConflict,
    OrderNotFound,
    open_order_for_upload,
    parse_order_id,
)
from tessera.storage.blobstore import StorageUnavailable
from tessera.storage.spool import SpoolFile
from tessera.storage.uids import uid_problem

log = logging.getLogger(__name__)

# A route that stores somewhere other than the archive (an upload session) puts its store
# function in the ASGI scope under this key: (spool file, SHA-256, target study) -> outcome.
STORE_INTO = "tessera.store_into"
StoreInto = Callable[[Path, str, str | None], StoreOutcome]
_ACCEPTED_PART_TYPES = ("application/dicom", "application/octet-stream")


async def store_instances(request: Request) -> Response:
    archive = archive_of(request)
    scope = await scope_of(request)
    study_uid = request.path_params.get("study")
    if study_uid is not None and uid_problem(study_uid):
        raise BadRequest(
            f"StudyInstanceUID in the path is not a valid UID ({uid_problem(study_uid)})"
        )

    media_type, params = parse_media_type(request.headers.get("content-type", ""))
    if media_type not in ("multipart/related", "application/dicom"):
        raise UnsupportedMediaType(
            'Content-Type must be multipart/related; type="application/dicom" '
            f"(got {media_type or 'none'})",
        )
    part_type = params.get("type", "application/dicom").lower()
    metadata_and_bulk_data = media_type == "multipart/related" and part_type in (
        DICOM_JSON,
        DICOM_XML,
    )
    if media_type == "multipart/related" and not (
        metadata_and_bulk_data or part_type == "application/dicom"
    ):
        raise UnsupportedMediaType(
            "parts are application/dicom, or application/dicom+json (or +xml) metadata with "
            f"bulk data (type={part_type})"
        )
    try:
        if json_answer_type(request.headers.get("accept")) is None:
            raise NotAcceptable(f"the STOW-RS response is {DICOM_JSON} (or application/json) only")
    except QualityError as exc:
        raise BadRequest(f"{exc} in Accept") from exc
    limit = archive.settings.max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ClientError(
                    413, f"request body of {declared} bytes exceeds the limit of {limit}"
                )
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None

    store: StoreInto | None = request.scope.get(STORE_INTO)
    group_store: Callable[[list[SpoolFile]], list[StoreOutcome]] | None = None
    order_id = None
    if "order" in request.query_params:
        if store is not None:
            raise BadRequest("order: attach the study when the upload session is committed")
        try:
            order_id = await run_in_threadpool(
                _open_order, archive, scope, request.query_params["order"]
            )
        except (OrderNotFound, OrderConflict) as exc:
            raise BadRequest(f"order: {exc}") from exc
    if store is None:
        try:
            source_pk = await run_in_threadpool(
                resolve_upload_source, archive, scope, request.query_params.get("source")
            )
        except UnknownSource as exc:
            raise BadRequest(str(exc)) from exc

        def store(path: Path, sha256: str, target_study: str | None) -> StoreOutcome:
            return ingest_file(
                archive, scope, path, sha256, source_pk, target_study, None, order_id
            )

        if order_id is None:  # an order's checks are per instance: those go one by one

            def group_store(spools: list[SpoolFile]) -> list[StoreOutcome]:
                files = [(spool.path, spool.sha256) for spool in spools]
                return ingest_files(archive, scope, files, source_pk, study_uid)

    if metadata_and_bulk_data:  # PS3.18 §10.5.1.2.2, in its own module
        from tessera.dicomweb.stow_json import receive_metadata_and_bulk_data

        outcomes, warning, status = await receive_metadata_and_bulk_data(
            request, params.get("boundary"), archive.spool_dir, store, study_uid, limit
        )
        if status is not None and not outcomes:
            raise ClientError(status, warning or "request rejected")
        return _store_response(request, outcomes, warning, study_uid, status)

    async def ingest(spool: SpoolFile) -> StoreOutcome:
        return await run_in_threadpool(store, spool.path, spool.sha256, study_uid)

    if media_type == "application/dicom":
        outcomes, warning, status = await _receive_single(request, archive.spool_dir, limit, ingest)
    else:
        boundary = params.get("boundary")
        if not boundary:
            raise BadRequest("multipart/related Content-Type has no boundary parameter")

        async def ingest_group(spools: list[SpoolFile]) -> list[StoreOutcome]:
            assert group_store is not None
            return await run_in_threadpool(group_store, spools)

        outcomes, warning, status = await _receive_multipart(
            request,
            boundary,
            archive.spool_dir,
            limit,
            ingest,
            ingest_group if group_store is not None else None,
        )
    if status is not None and not outcomes:
        raise ClientError(status, warning or "request rejected")
    if any(o.retry_later for o in outcomes):
        # Storage is unreachable: every instance is stored whole or not at all, and storing
        # is idempotent, so the client sends the whole request again later.
        raise StorageUnavailable(next(o.message for o in outcomes if o.retry_later))
    return _store_response(request, outcomes, warning, study_uid, status)


def _open_order(archive, scope, raw: str) -> int:  # type: ignore[no-untyped-def]
    """The order `?order=` names: visible to the uploader and open (docs/orders.md)."""
    order_id = parse_order_id(raw)
    with archive.database.read() as conn:
        open_order_for_upload(conn, scope, order_id)
    return order_id


async def _receive_single(request, spool_dir, limit, ingest):  # type: ignore[no-untyped-def]
    spool = SpoolFile(spool_dir)
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                spool.discard()
                return [], f"request body exceeds the limit of {limit} bytes", 413
            spool.write(chunk)
    except ClientDisconnect:
        spool.discard()
        log.warning("client disconnected during STOW-RS upload")
        return [], "client disconnected", 400
    spool.close()
    return [await ingest(spool)], None, None


class _PartSpooler:
    """Feeds body bytes to the multipart parser and writes each part to its spool file.

    Runs in a worker thread: file writes can stall behind other threads' fsyncs (one journal
    per file system) and must not stall the event loop.
    """

    def __init__(self, boundary: str, spool_dir: Path) -> None:
        self.parser = MultipartParser(boundary)
        self.spool_dir = spool_dir
        self.spool: SpoolFile | None = None
        self.wrong_type: str | None = None

    def feed(self, chunks: list[bytes]) -> list[tuple[SpoolFile, str | None]]:
        """Returns the parts completed by `chunks`: (spool file, wrong media type or None).

        Each chunk is parsed as it came (joining them would copy every byte once more)."""
        completed = []
        for event in (event for chunk in chunks for event in self.parser.feed(chunk)):
            if isinstance(event, PartStart):
                self.spool = SpoolFile(self.spool_dir)
                part_type = parse_media_type(
                    event.headers.get("content-type", "application/dicom")
                )[0]
                self.wrong_type = None if part_type in _ACCEPTED_PART_TYPES else part_type
            elif isinstance(event, PartData):
                assert self.spool is not None
                self.spool.write(event.data)
            elif isinstance(event, PartEnd):
                assert self.spool is not None
                self.spool.close()
                completed.append((self.spool, self.wrong_type))
                self.spool = None
        return completed

    def discard_incomplete(self) -> None:
        if self.spool is not None:
            self.spool.discard()
            self.spool = None


_FEED_BYTES = 1024 * 1024  # hand the spooling thread about this much at a time
GROUP_PARTS = 10  # parts stored per group commit


async def _receive_multipart(request, boundary, spool_dir, limit, ingest, ingest_group=None):  # type: ignore[no-untyped-def]
    """Returns (outcomes, warning text, forced HTTP status or None).

    With `ingest_group`, complete parts are stored GROUP_PARTS at a time (group commit: one
    folder sync per folder and one transaction per group) while the next are received."""
    try:
        spooler = _PartSpooler(boundary, spool_dir)
    except MultipartError as exc:
        return [], str(exc), 400
    parser = spooler.parser
    outcomes = _Pipeline()
    total = 0
    pending: list[bytes] = []
    pending_size = 0
    group: list[SpoolFile] = []

    async def flush_group() -> None:
        nonlocal group
        if group:
            await outcomes.submit_group(ingest_group(group))
            group = []

    async def finish() -> list[StoreOutcome]:
        await flush_group()
        return await outcomes.results()

    async def feed() -> None:
        nonlocal pending, pending_size
        chunks = pending
        pending, pending_size = [], 0
        for spool, wrong_type in await run_in_threadpool(spooler.feed, chunks):
            if wrong_type is not None:
                spool.discard()
                await flush_group()  # outcomes stay in part order
                outcomes.append(
                    StoreOutcome(
                        False,
                        failure_reason=failure_reasons.WRONG_MEDIA_TYPE,
                        message=f"part has media type {wrong_type}, not application/dicom",
                    )
                )
            elif ingest_group is not None:
                group.append(spool)
                if len(group) >= GROUP_PARTS:
                    await flush_group()
            else:
                await outcomes.submit(ingest(spool))

    try:
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    return (
                        await finish(),
                        f"request body exceeds the limit of {limit} bytes",
                        413,
                    )
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _FEED_BYTES:
                    await feed()
            await feed()
            await flush_group()
        except ClientDisconnect:
            await feed()  # parts completed before the drop are kept
            done = await finish()
            log.warning(
                "client disconnected during STOW-RS upload; complete parts were kept",
                extra={"parts_stored": sum(o.stored for o in done)},
            )
            return done, "client disconnected", 400
    except MultipartError as exc:
        return await finish(), f"malformed multipart body: {exc}", 400
    finally:
        spooler.discard_incomplete()
        for spool in group:  # left only when an exception ends the request
            spool.discard()
    if not parser.finished:
        if parser.parts_started == 0:
            return (
                await finish(),
                "body holds no multipart part with the given boundary",
                400,
            )
        return (
            await finish(),
            f"multipart body is truncated: {parser.parts_completed} complete part(s) processed, "
            "the incomplete last part was discarded",
            400,
        )
    done = await finish()
    if not done:
        return done, "multipart body holds no parts", 400
    return done, None, None


class _Pipeline:
    """Ingests a request's parts (or groups of parts) while the next ones are still being
    received, a few at a time, and gives the outcomes back in part order."""

    IN_FLIGHT = 3

    def __init__(self) -> None:
        self._items: list[asyncio.Task[Any] | StoreOutcome] = []

    def append(self, outcome: StoreOutcome) -> None:
        self._items.append(outcome)

    async def submit(self, work: Coroutine[Any, Any, StoreOutcome]) -> None:
        pending = [i for i in self._items if isinstance(i, asyncio.Task) and not i.done()]
        if len(pending) >= self.IN_FLIGHT:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        self._items.append(asyncio.ensure_future(work))

    async def submit_group(self, work: Coroutine[Any, Any, list[StoreOutcome]]) -> None:
        await self.submit(work)  # type: ignore[arg-type]  # results() flattens it

    async def results(self) -> list[StoreOutcome]:
        done: list[StoreOutcome] = []
        for item in self._items:
            outcome = await item if isinstance(item, asyncio.Task) else item
            done.extend(outcome if isinstance(outcome, list) else [outcome])
        return done


def _store_response(
    request: Request,
    outcomes: list[StoreOutcome],
    warning: str | None,
    study_uid: str | None,
    forced_status: int | None,
) -> Response:
    root = dicomweb_root(request)
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for outcome in outcomes:
        item: dict[str, Any] = {}
        if outcome.sop_class_uid:
            item["00081150"] = {"vr": "UI", "Value": [outcome.sop_class_uid]}
        if outcome.sop_instance_uid:
            item["00081155"] = {"vr": "UI", "Value": [outcome.sop_instance_uid]}
        if outcome.stored:
            url = (
                f"{root}/studies/{outcome.study_instance_uid}/series/"
                f"{outcome.series_instance_uid}/instances/{outcome.sop_instance_uid}"
            )
            item["00081190"] = {"vr": "UR", "Value": [url]}
            if outcome.warning_reason is not None:
                item["00081196"] = {"vr": "US", "Value": [outcome.warning_reason]}
                item["00000902"] = {"vr": "LO", "Value": [outcome.message[:64]]}
            referenced.append(item)
        else:
            item["00081197"] = {
                "vr": "US",
                "Value": [outcome.failure_reason or failure_reasons.PROCESSING_FAILURE],
            }
            # Not a standard attribute: the human-readable reason, under a private-free name
            # clients ignore. Also logged.
            item["00000902"] = {"vr": "LO", "Value": [outcome.message[:64]]}
            failed.append(item)
            log.info(
                "instance not stored",
                extra={
                    "sop_instance_uid": outcome.sop_instance_uid,
                    "failure_reason": f"{outcome.failure_reason or 0:04X}",
                    "detail": outcome.message,
                },
            )
    body: dict[str, Any] = {}
    retrieve_study = study_uid or _single_study(outcomes)
    body["00081190"] = (
        {"vr": "UR", "Value": [f"{root}/studies/{retrieve_study}"]}
        if retrieve_study
        else {"vr": "UR"}
    )
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}

    if forced_status is not None and not referenced:
        status = forced_status
    elif not failed and forced_status is None:
        # 202 when an instance was stored with a warning (PS3.18 Table 10.5.3-1).
        status = 202 if any(o.warning_reason is not None for o in outcomes) else 200
    elif referenced:
        status = 202
    else:
        status = 400 if all(_is_syntax_failure(o) for o in outcomes) else 409
    headers = {}
    if warning:
        headers["Warning"] = f'299 tessera "{warning}"'
    answer_type = json_answer_type(request.headers.get("accept")) or DICOM_JSON  # checked first
    return Response(orjson.dumps(body), status_code=status, media_type=answer_type, headers=headers)


def _single_study(outcomes: list[StoreOutcome]) -> str | None:
    studies = {o.study_instance_uid for o in outcomes if o.stored and o.study_instance_uid}
    return studies.pop() if len(studies) == 1 else None


def _is_syntax_failure(outcome: StoreOutcome) -> bool:
    """Failures caused by unreadable bytes (400) rather than conflicts with stored data (409)."""
    return outcome.failure_reason in (
        failure_reasons.CANNOT_UNDERSTAND,
        failure_reasons.NOT_PART10,
        failure_reasons.TRUNCATED,
        failure_reasons.WRONG_MEDIA_TYPE,
        failure_reasons.MISSING_OR_INVALID_UID,
    )


routes = [
    guarded("/studies", store_instances, methods=["POST"], permission=UPLOAD, action=AUDIT_UPLOAD),
    guarded(
        "/studies/{study}",
        store_instances,
        methods=["POST"],
        permission=UPLOAD,
        action=AUDIT_UPLOAD,
    ),
]
