"""Content negotiation for WADO-RS (PS3.18 §8.7): which media type and transfer syntax to
send, from an Accept header as real clients write it.

Two steps, so a whole study is negotiated once and each instance gets its own answer:

1. ``acceptable(accept_header, resource)`` turns the header into candidate
   ``Representation``s (media type, requested transfer syntax, multipart or not) in the
   client's order of preference (q-values, then header order); ranges the resource cannot
   serve at all are dropped. Raises ``AcceptError`` for a malformed header (400).
2. ``target_syntax(candidates, stored_ts, can_convert)`` picks, for one stored object, the
   first candidate that can be produced and the exact transfer syntax to send (None: 406).
   ``can_convert`` is one of the rules of tessera/storage/syntaxes.py (``can_convert`` for
   whole instances, ``can_convert_frames`` for frames), which also owns the native and lossy
   sets and which syntaxes pass through unchanged; this module knows only HTTP's media types.

Accepted spellings: ``type=`` and ``transfer-syntax=`` quoted or unquoted, ``*`` for "as
stored", several ranges with q-values, ``*/*`` and an absent header (the resource's
default), bare media types (``application/dicom``, ``image/jpeg``: a single-part body).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tessera.dicomweb.media_type import (
    DICOM,
    OCTET_STREAM,
    QualityError,
    parse_media_type,
    quality,
    split_media_ranges,
)
from tessera.storage import syntaxes
from tessera.storage.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN

AS_STORED = "*"

# Compressed pixel data media types and their transfer syntaxes (PS3.18 Table 8.7.3-5);
# the first of each list is the media type's default.
PIXEL_MEDIA_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    ),
    "image/jls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "image/jp2": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"),
    "image/jpx": ("1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"),
    "image/jphc": ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
    "image/dicom-rle": ("1.2.840.10008.1.2.5",),
}


def media_type_for_syntax(transfer_syntax: str) -> str:
    """The pixel data media type that carries frames of this transfer syntax."""
    for media_type, family in PIXEL_MEDIA_TYPES.items():
        if transfer_syntax in family:
            return media_type
    return OCTET_STREAM


class AcceptError(ValueError):
    """A malformed Accept header (answered with 400)."""


@dataclass(frozen=True)
class Representation:
    media_type: str
    # A transfer syntax UID, AS_STORED, or None (the media type's default).
    transfer_syntax: str | None
    multipart: bool


@dataclass(frozen=True)
class Resource:
    """What one kind of WADO-RS resource can be sent as."""

    media_types: tuple[str, ...]
    default: str
    # Whether a bare (non-multipart) media type is acceptable.
    single_part: bool = True


INSTANCES = Resource((DICOM,), DICOM)
FRAMES = Resource((OCTET_STREAM, *PIXEL_MEDIA_TYPES), OCTET_STREAM)
BULK_DATA = Resource((OCTET_STREAM,), OCTET_STREAM)


def _quality(params: dict[str, str]) -> float:
    try:
        return quality(params)
    except QualityError as exc:
        raise AcceptError(f"{exc} in Accept") from exc


def _syntax_param(params: dict[str, str]) -> str | None:
    value = params.get("transfer-syntax")
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise AcceptError("empty transfer-syntax parameter in Accept")
    return value


def acceptable(accept_header: str | None, resource: Resource) -> list[Representation]:
    """Candidate representations the client accepts, most preferred first."""
    ranges = split_media_ranges(accept_header or "")
    if not ranges:
        return [Representation(resource.default, None, True)]
    weighted: list[tuple[float, int, Representation]] = []
    for order, item in enumerate(ranges):
        media_type, params = parse_media_type(item)
        if not media_type or "/" not in media_type:
            raise AcceptError(f"malformed media range {item!r} in Accept")
        q = _quality(params)
        if q == 0:
            continue
        syntax = _syntax_param(params)
        if media_type == "multipart/related":
            part_type = params.get("type", resource.default).strip().lower() or resource.default
            if part_type in ("*/*", "*"):
                part_type = resource.default
            if part_type in resource.media_types:
                weighted.append((q, order, Representation(part_type, syntax, True)))
        elif media_type in ("*/*", "multipart/*"):
            weighted.append((q, order, Representation(resource.default, syntax, True)))
        elif media_type in resource.media_types and resource.single_part:
            weighted.append((q, order, Representation(media_type, syntax, False)))
    weighted.sort(key=lambda entry: (-entry[0], entry[1]))
    return [entry[2] for entry in weighted]


Converter = Callable[[str, str], bool]


def _syntax_for(rep: Representation, stored: str, can_convert: Converter) -> str | None:
    requested = rep.transfer_syntax
    if rep.media_type == DICOM:
        if requested == AS_STORED:
            return stored
        if requested is None:
            # Default Explicit VR Little Endian, except that a lossy object is sent as stored
            # and one we cannot decode too (PS3.18 §8.7.3.5.2 allows both).
            if stored == EXPLICIT_VR_LITTLE_ENDIAN:
                return stored
            if stored in syntaxes.ALLOWS_LOSSY or not can_convert(
                stored, EXPLICIT_VR_LITTLE_ENDIAN
            ):
                return stored
            return EXPLICIT_VR_LITTLE_ENDIAN
        if requested == stored or can_convert(stored, requested):
            return requested
        return None
    if rep.media_type == OCTET_STREAM:
        if requested == AS_STORED:
            return stored
        target = requested or EXPLICIT_VR_LITTLE_ENDIAN
        if target not in syntaxes.NATIVE and target != stored:
            return None  # compressed frames have their own media types
        if syntaxes.passes_through(stored, target) or can_convert(stored, target):
            return target
        return None
    family = PIXEL_MEDIA_TYPES.get(rep.media_type)
    if family is None:
        return None
    if requested in (None, AS_STORED):
        if stored in family:
            return stored
        requested = family[0]
    if requested not in family:
        return None
    if requested == stored or can_convert(stored, requested):
        return requested
    return None


def target_syntax(
    candidates: list[Representation], stored: str, can_convert: Converter
) -> tuple[Representation, str] | None:
    """The first candidate producible from `stored`, and the transfer syntax to send."""
    for rep in candidates:
        syntax = _syntax_for(rep, stored, can_convert)
        if syntax is not None:
            return rep, syntax
    return None
