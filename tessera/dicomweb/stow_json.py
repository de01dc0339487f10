"""STOW-RS "metadata and bulk data" requests (PS3.18 §10.5.1.2.2): multipart/related;
type="application/dicom+json", one or more DICOM JSON parts (arrays of instances) and the
bulk data parts their BulkDataURIs name (matched by Content-Location, or `cid:` + Content-ID).
The XML form (type="application/dicom+xml") is the same with one Native DICOM Model document
per instance (tessera/storage/xml_instance.py turns each into the JSON model first).

The whole body is received first (JSON parts in memory up to MAX_METADATA_BYTES, bulk data
parts spooled to disk), then each instance is built (tessera/storage/json_instance.py),
written as Part 10 and stored through the same ingest as every other upload. Instances the
server completed (new UIDs, Instance Number, dates) are reported with Warning Reason B300
(coercion of data elements) and the filled keywords.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from tessera.dicomweb.media_type import DICOM_JSON, DICOM_XML, parse_media_type
from tessera.dicomweb.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart
from tessera.services import failure_reasons
from tessera.services.ingest import StoreOutcome
from tessera.storage.documents.common import write_part10
from tessera.storage.json_instance import (
    BulkPart,
    InstanceNotUsable,
    RequestDefaults,
    build_instance,
)
from tessera.storage.spool import SpoolFile
from tessera.storage.xml_instance import native_xml_to_json

METADATA_TYPES = (DICOM_JSON, DICOM_XML)
MAX_METADATA_BYTES = 64 * 1024 * 1024
COERCION_OF_DATA_ELEMENTS = 0xB300


@dataclass
class _Received:
    # (media type, bytes) of each metadata part, DICOM JSON or Native DICOM Model XML
    metadata: list[tuple[str, bytes]] = field(default_factory=list)
    # Content-Location (and "cid:" + Content-ID) -> (spool file, media type, transfer syntax)
    bulk: dict[str, tuple[SpoolFile, str, str | None]] = field(default_factory=dict)
    spools: list[SpoolFile] = field(default_factory=list)

    def discard(self) -> None:
        for spool in self.spools:
            spool.discard()


async def receive_metadata_and_bulk_data(
    request: Request,
    boundary: str | None,
    spool_dir: Path,
    store: Callable[[Path, str, str | None], StoreOutcome],
    study_uid: str | None,
    limit: int,
) -> tuple[list[StoreOutcome], str | None, int | None]:
    """(outcomes, warning, forced status) as stow.store_instances answers them. `store`
    stores one Part 10 file (consuming it): into the archive, or into an upload session."""
    if not boundary:
        return [], "multipart/related Content-Type has no boundary parameter", 400
    received = _Received()
    try:
        problem = await _receive(request, boundary, spool_dir, limit, received)
        if problem is not None:
            return [], problem[1], problem[0]
        if not received.metadata:
            return [], "the request holds no application/dicom+json metadata part (nor +xml)", 400
        outcomes = await run_in_threadpool(_store_all, spool_dir, store, study_uid, received)
    finally:
        received.discard()
    filled = [
        f"{o.sop_instance_uid}: {', '.join(o.filled)}" for o in outcomes if o.stored and o.filled
    ]
    warning = "attributes filled by the server: " + "; ".join(filled) if filled else None
    return outcomes, warning, None


async def _receive(
    request: Request, boundary: str, spool_dir: Path, limit: int, received: _Received
) -> tuple[int, str] | None:
    try:
        parser = MultipartParser(boundary)
    except MultipartError as exc:
        return 400, str(exc)
    total = 0
    json_buffer: bytearray | None = None
    metadata_type = DICOM_JSON
    spool: SpoolFile | None = None
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                return 413, f"request body exceeds the limit of {limit} bytes"
            for event in parser.feed(chunk):
                if isinstance(event, PartStart):
                    media_type, params = parse_media_type(
                        event.headers.get("content-type", "application/octet-stream")
                    )
                    if media_type in METADATA_TYPES:
                        json_buffer, spool, metadata_type = bytearray(), None, media_type
                    else:
                        json_buffer = None
                        spool = SpoolFile(spool_dir)
                        received.spools.append(spool)
                        entry = (spool, media_type, params.get("transfer-syntax"))
                        location = event.headers.get("content-location", "").strip()
                        content_id = event.headers.get("content-id", "").strip().strip("<>")
                        if location:
                            received.bulk[location] = entry
                        if content_id:
                            received.bulk[f"cid:{content_id}"] = entry
                elif isinstance(event, PartData):
                    if json_buffer is not None:
                        json_buffer += event.data
                        if len(json_buffer) > MAX_METADATA_BYTES:
                            return 413, "a metadata part is larger than 64 MiB"
                    elif spool is not None:
                        spool.write(event.data)
                elif isinstance(event, PartEnd):
                    if json_buffer is not None:
                        received.metadata.append((metadata_type, bytes(json_buffer)))
                    elif spool is not None:
                        spool.close()
                    json_buffer, spool = None, None
    except MultipartError as exc:
        return 400, f"malformed multipart body: {exc}"
    except ClientDisconnect:
        return 400, "client disconnected"
    if not parser.finished:
        return 400, "multipart body is truncated"
    return None


def _store_all(
    spool_dir: Path,
    store: Callable[[Path, str, str | None], StoreOutcome],
    study_uid: str | None,
    received: _Received,
) -> list[StoreOutcome]:
    defaults = RequestDefaults(study_instance_uid=study_uid)
    cache: dict[str, BulkPart] = {}

    def bulk_part(uri: str) -> BulkPart | None:
        if uri in cache:
            return cache[uri]
        entry = received.bulk.get(uri)
        if entry is None:
            return None
        spool, media_type, syntax = entry
        part = BulkPart(spool.path.read_bytes(), media_type, syntax)
        cache[uri] = part
        return part

    outcomes: list[StoreOutcome] = []
    for media_type, raw in received.metadata:
        if media_type == DICOM_XML:  # one instance per Native DICOM Model document
            try:
                item = native_xml_to_json(raw)
            except InstanceNotUsable as exc:
                outcomes.append(
                    StoreOutcome(
                        False, failure_reason=failure_reasons.CANNOT_UNDERSTAND, message=str(exc)
                    )
                )
                continue
            outcomes.append(_store_one(spool_dir, store, study_uid, item, bulk_part, defaults))
            continue
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            outcomes.append(
                StoreOutcome(
                    False,
                    failure_reason=failure_reasons.CANNOT_UNDERSTAND,
                    message=f"bad JSON: {exc}",
                )
            )
            continue
        for item in items if isinstance(items, list) else [items]:
            outcomes.append(_store_one(spool_dir, store, study_uid, item, bulk_part, defaults))
    return outcomes


def _store_one(
    spool_dir: Path,
    store: Callable[[Path, str, str | None], StoreOutcome],
    study_uid: str | None,
    item: Any,
    bulk_part,
    defaults: RequestDefaults,
) -> StoreOutcome:
    try:
        built = build_instance(item, bulk_part, defaults)
    except InstanceNotUsable as exc:
        sop = item.get("00080018", {}) if isinstance(item, dict) else {}
        values = sop.get("Value") if isinstance(sop, dict) else None
        return StoreOutcome(
            False,
            sop_instance_uid=values[0] if values else None,
            failure_reason=failure_reasons.CANNOT_UNDERSTAND,
            message=str(exc),
        )
    dataset = built.dataset
    if not dataset.get("SOPClassUID"):
        return StoreOutcome(
            False,
            sop_instance_uid=str(dataset.SOPInstanceUID),
            failure_reason=failure_reasons.MISSING_OR_INVALID_UID,
            message="SOPClassUID (00080016) is missing",
        )
    with tempfile.NamedTemporaryFile(
        dir=spool_dir, prefix="json-", suffix=".dcm", delete=False
    ) as fh:
        path = Path(fh.name)
    try:
        write_part10(dataset, path, built.transfer_syntax_uid)
    except Exception as exc:  # pydicom cannot encode a value the JSON gave
        path.unlink(missing_ok=True)
        return StoreOutcome(
            False,
            str(dataset.SOPClassUID),
            str(dataset.SOPInstanceUID),
            failure_reason=failure_reasons.CANNOT_UNDERSTAND,
            message=f"the instance cannot be encoded: {exc}",
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    outcome = store(path, digest, study_uid)
    if outcome.stored and built.filled:
        outcome.warning_reason = COERCION_OF_DATA_ELEMENTS
        outcome.message = _short(built.filled)
        outcome.filled = built.filled
    return outcome


_SHORT_NAMES = {
    "StudyInstanceUID": "Study UID",
    "SeriesInstanceUID": "Series UID",
    "SOPInstanceUID": "SOP UID",
    "SOPClassUID": "SOP Class",
    "InstanceNumber": "Instance Number",
}


def _short(filled: list[str]) -> str:
    """The filled attributes in at most 64 characters (the response's Error Comment is LO);
    the full list is in the response's Warning header."""
    names = [_SHORT_NAMES[k] for k in filled if k in _SHORT_NAMES]
    if any(k not in _SHORT_NAMES for k in filled):
        names.append("dates")
    return ("filled: " + ", ".join(names))[:64]
