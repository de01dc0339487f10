"""Media types: the names DICOMweb uses, parsing one media type with parameters
(Content-Type, or one item of Accept), and the quality (q) of an Accept media range."""

from __future__ import annotations

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
OCTET_STREAM = "application/octet-stream"


class QualityError(ValueError):
    """A q parameter that is not a number from 0 to 1 (RFC 9110 §12.4.2)."""


def _split_unquoted(value: str, separator: str) -> list[str]:
    """Split on `separator` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """'multipart/related; type="application/dicom"; boundary=x' ->
    ('multipart/related', {'type': 'application/dicom', 'boundary': 'x'}).

    The type and parameter names are lower-cased; values keep their case, unquoted.
    """
    pieces = _split_unquoted(value or "", ";")
    media_type = pieces[0].strip().lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, sep, raw = piece.partition("=")
        if not sep:
            continue
        params[name.strip().lower()] = _unquote(raw)
    return media_type, params


def split_media_ranges(header: str) -> list[str]:
    """Split an Accept header into its media ranges (commas inside quotes kept)."""
    return [item.strip() for item in _split_unquoted(header or "", ",") if item.strip()]


def quality(params: dict[str, str]) -> float:
    """The q-value of a media range (1 when absent); 0 means "not acceptable".

    Raises QualityError for a value that is not a number from 0 to 1."""
    raw = params.get("q")
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise QualityError(f"invalid q-value {raw!r}") from exc
    if not 0 <= value <= 1:
        raise QualityError(f"q-value {raw!r} is outside 0..1")
    return value


def json_answer_type(accept_header: str | None) -> str | None:
    """The media type of a DICOM JSON answer (QIDO-RS, metadata, the STOW-RS response) that
    Accept allows: application/dicom+json (also for `*/*`, `application/*` or no Accept), or
    application/json when only that is accepted (the same body; DICOM JSON is JSON); None
    when neither is acceptable (406). Raises QualityError for a malformed q-value."""
    ranges = split_media_ranges(accept_header or "")
    if not ranges:
        return DICOM_JSON
    weighted: list[tuple[float, int, str]] = []
    for order, item in enumerate(ranges):
        media_type, params = parse_media_type(item)
        q = quality(params)
        if q == 0:
            continue
        if media_type in (DICOM_JSON, "application/*", "*/*"):
            weighted.append((-q, order, DICOM_JSON))
        elif media_type == "application/json":
            weighted.append((-q, order, "application/json"))
    return min(weighted)[2] if weighted else None
