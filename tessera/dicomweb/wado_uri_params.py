"""A WADO-URI query string -> a typed `WadoUriRequest` (PS3.18 §9.1.2), every parameter
checked before the archive is asked: a malformed or unsupported one is a ClientError naming it
(400; 406 for a contentType Tessera cannot produce)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tessera.dicomweb.errors import ClientError
from tessera.dicomweb.media_type import DICOM
from tessera.dicomweb.wado_rendered import JPEG, PNG, RenderRequest
from tessera.storage.uids import uid_problem

_UNSUPPORTED = ("anonymize", "region", "annotation", "presentationUID", "presentationSeriesUID")
_UIDS = ("studyUID", "seriesUID", "objectUID")
_IMAGE_ONLY = ("frameNumber", "windowCenter", "windowWidth", "rows", "columns")


@dataclass(frozen=True)
class WadoUriRequest:
    study: str
    series: str
    instance: str
    content_type: str  # application/dicom, image/jpeg or image/png
    transfer_syntax: str | None = None  # application/dicom: None (default) or "*" (as stored)
    frame_number: int = 1  # images: 1-based
    rendering: RenderRequest | None = None  # images

    @property
    def wants_dicom(self) -> bool:
        return self.content_type == DICOM


def parse_wado_uri(query: Mapping[str, str]) -> WadoUriRequest:
    if query.get("requestType") != "WADO":
        raise ClientError(400, "requestType=WADO is required")
    study, series, instance = (_uid(query, name) for name in _UIDS)
    for name in _UNSUPPORTED:
        if name in query:
            raise ClientError(400, f"the {name} parameter is not supported")
    content_type = _content_type(query.get("contentType"))
    if content_type == DICOM:
        return WadoUriRequest(
            study, series, instance, content_type, transfer_syntax=_transfer_syntax(query)
        )
    return WadoUriRequest(
        study,
        series,
        instance,
        content_type,
        frame_number=_int_param(query.get("frameNumber"), "frameNumber") or 1,
        rendering=_rendering(query, content_type),
    )


def _uid(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    reason = uid_problem(value)
    if reason or value is None:
        raise ClientError(400, f"{name} is {reason}")
    return value


def _content_type(value: str | None) -> str:
    """The first of the listed types Tessera produces (`*/*` and `image/*`: JPEG)."""
    wanted = [t.split(";")[0].strip().lower() for t in (value or JPEG).split(",")]
    chosen = next((t for t in wanted if t in (DICOM, JPEG, PNG, "*/*", "image/*")), None)
    if chosen is None:
        raise ClientError(406, f"contentType {value!r}: use {DICOM}, {JPEG} or {PNG}")
    return JPEG if chosen in ("*/*", "image/*") else chosen


def _transfer_syntax(query: Mapping[str, str]) -> str | None:
    for name in _IMAGE_ONLY:
        if name in query:
            raise ClientError(400, f"{name} applies to image content types only")
    requested = query.get("transferSyntax") or None
    if requested is not None and requested != "*" and uid_problem(requested):
        raise ClientError(400, f"transferSyntax is {uid_problem(requested)}")
    return requested


def _rendering(query: Mapping[str, str], content_type: str) -> RenderRequest:
    if "transferSyntax" in query:
        raise ClientError(400, "transferSyntax applies to application/dicom only")
    center = _float_param(query.get("windowCenter"), "windowCenter")
    width = _float_param(query.get("windowWidth"), "windowWidth")
    if (center is None) != (width is None):
        raise ClientError(400, "windowCenter and windowWidth go together")
    if width is not None and width <= 0:
        raise ClientError(400, "windowWidth must be positive")
    quality = _int_param(query.get("imageQuality"), "imageQuality")
    if quality is not None and quality > 100:
        raise ClientError(400, "imageQuality is 1..100")
    rows = _int_param(query.get("rows"), "rows")
    columns = _int_param(query.get("columns"), "columns")
    return RenderRequest(content_type, center, width, "linear", rows, columns, quality)


def _int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ClientError(400, f"{name} must be a positive integer (got {value!r})")
    return int(value)


def _float_param(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise ClientError(400, f"{name} must be a number (got {value!r})") from exc
