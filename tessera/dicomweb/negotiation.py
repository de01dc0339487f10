"""Content negotiation for WADO-RS (PS3.18 §8.7): which media type and transfer syntax to
send, from an Accept header as real clients write it.

Two steps, so a whole study is negotiated once and each instance gets its own answer:

1. ``acceptable(accept_header, resource)`` turns the header into candidate
   ``Representation``s (media type, requested transfer syntax, multipart or not) in the
   client's order of preference (q-values, then header order); ranges the resource cannot
   serve at all are dropped. Raises ``AcceptError`` for a malformed header (400).
2. ``target_syntax(candidates, stored_ts, can_convert)`` picks, for one stored object, the
   first candidate that can be produced and the exact transfer syntax to send (None: 406).

Accepted spellings: ``type=`` and ``transfer-syntax=`` quoted or unquoted, ``*`` for "as
stored", several ranges with q-values, ``*/*`` and an absent header (the resource's
default), bare media types (``application/dicom``, ``image/jpeg``: a single-part body).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tessera.dicomweb.media_type import parse_media_type, split_media_ranges

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
AS_STORED = "*"

DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"

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
# Transfer syntaxes whose frames are the native little endian pixel bytes.
NATIVE_LITTLE_ENDIAN = frozenset(
    {EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN}
)
NATIVE = NATIVE_LITTLE_ENDIAN | {EXPLICIT_VR_BIG_ENDIAN}
# Lossy transfer syntaxes: an object stored in one is sent as stored by default
# (PS3.18 §8.7.3.5.2 lets the origin server do so rather than decompress it).
LOSSY = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.203",
    }
)


def media_type_for_syntax(transfer_syntax: str) -> str:
    """The pixel data media type that carries frames of this transfer syntax."""
    for media_type, syntaxes in PIXEL_MEDIA_TYPES.items():
        if transfer_syntax in syntaxes:
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
    raw = params.get("q")
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise AcceptError(f"invalid q-value {raw!r} in Accept") from exc
    if not 0 <= value <= 1:
        raise AcceptError(f"q-value {raw!r} in Accept is outside 0..1")
    return value


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


def _same_pixels(stored: str, target: str) -> bool:
    """Frames can be sent unchanged: same syntax, or native little endian either way."""
    return stored == target or (stored in NATIVE_LITTLE_ENDIAN and target in NATIVE_LITTLE_ENDIAN)


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
            if stored in LOSSY or not can_convert(stored, EXPLICIT_VR_LITTLE_ENDIAN):
                return stored
            return EXPLICIT_VR_LITTLE_ENDIAN
        if requested == stored or can_convert(stored, requested):
            return requested
        return None
    if rep.media_type == OCTET_STREAM:
        if requested == AS_STORED:
            return stored
        target = requested or EXPLICIT_VR_LITTLE_ENDIAN
        if target not in NATIVE and target != stored:
            return None  # compressed frames have their own media types
        if _same_pixels(stored, target) or can_convert(stored, target):
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


def needs_conversion(stored: str, target: str) -> bool:
    """Whether frames must be decoded/encoded to go from `stored` to `target`."""
    return not _same_pixels(stored, target)
