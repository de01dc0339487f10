"""The one transfer-syntax vocabulary: native or encapsulated, lossy or not, which syntaxes
this server can decode and encode, and the rules both facades ask (see docs/transcoding.md):

- ``passes_through(stored, target)``: the stored bytes can go out unchanged;
- ``can_convert(stored, target)`` / ``can_convert_frames(stored, target)``: a whole instance
  (WADO-RS, WADO-URI) or single frames (WADO-RS frames) can be sent in ``target``;
- ``ALLOWS_LOSSY``: the syntaxes an image may have lost information in (WADO-RS sends an
  instance stored in one as stored when no transfer syntax is asked for);
- ``send_syntaxes(stored, accepted)``: the syntaxes to try, best first, for a C-STORE
  sub-operation (C-MOVE, C-GET) to a receiver that accepted ``accepted``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import imagecodecs
from pydicom import uid as pydicom_uid
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import UID

EXPLICIT_VR_LITTLE_ENDIAN = pydicom_uid.ExplicitVRLittleEndian
IMPLICIT_VR_LITTLE_ENDIAN = pydicom_uid.ImplicitVRLittleEndian
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = pydicom_uid.DeflatedExplicitVRLittleEndian
EXPLICIT_VR_BIG_ENDIAN = pydicom_uid.ExplicitVRBigEndian
RLE_LOSSLESS = pydicom_uid.RLELossless
JPEG_BASELINE = pydicom_uid.JPEGBaseline8Bit
JPEG_EXTENDED = pydicom_uid.JPEGExtended12Bit
JPEG_LOSSLESS = pydicom_uid.JPEGLossless
JPEG_LOSSLESS_SV1 = pydicom_uid.JPEGLosslessSV1
JPEG_LS_LOSSLESS = pydicom_uid.JPEGLSLossless
JPEG_LS_NEAR_LOSSLESS = pydicom_uid.JPEGLSNearLossless
JPEG_2000_LOSSLESS = pydicom_uid.JPEG2000Lossless
JPEG_2000 = pydicom_uid.JPEG2000
HTJ2K_LOSSLESS = pydicom_uid.HTJ2KLossless
HTJ2K_LOSSLESS_RPCL = pydicom_uid.HTJ2KLosslessRPCL
HTJ2K = pydicom_uid.HTJ2K

# Native syntaxes whose Pixel Data bytes are little endian and identical to each other.
NATIVE_LITTLE_ENDIAN = frozenset(
    {EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN}
)
NATIVE = NATIVE_LITTLE_ENDIAN | {EXPLICIT_VR_BIG_ENDIAN}

# Syntaxes that are lossy by definition (retired JPEG extended/spectral processes included).
ALWAYS_LOSSY = frozenset(
    {
        JPEG_BASELINE,
        JPEG_EXTENDED,
        *(UID(f"1.2.840.10008.1.2.4.{n}") for n in range(52, 57)),
        *(UID(f"1.2.840.10008.1.2.4.{n}") for n in (59, 60, 61, 62, 63, 64)),
    }
)
# Syntaxes that may carry lossy or lossless data: the codestream or the dataset tells.
MAYBE_LOSSY = frozenset({JPEG_LS_NEAR_LOSSLESS, JPEG_2000, HTJ2K, pydicom_uid.JPEG2000MC})
# Syntaxes whose data may have lost information (PS3.5 §8.2 and Annex A: the JPEG DCT
# processes always, JPEG-LS near-lossless, JPEG 2000 parts 1 and 2 and HTJ2K per codestream).
ALLOWS_LOSSY = ALWAYS_LOSSY | MAYBE_LOSSY

_JPEG_2000_FAMILY_LISTED = (
    JPEG_2000_LOSSLESS,
    JPEG_2000,
    pydicom_uid.JPEG2000MCLossless,
    pydicom_uid.JPEG2000MC,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    HTJ2K,
)
JPEG_2000_FAMILY = frozenset(_JPEG_2000_FAMILY_LISTED)
JPEG_LOSSY_FAMILY = ALWAYS_LOSSY

# Lossy Image Compression Method (0028,2114) defined terms (PS3.3 C.7.6.1.1.5.1).
COMPRESSION_METHOD = {
    **dict.fromkeys(ALWAYS_LOSSY, "ISO_10918_1"),
    JPEG_LS_NEAR_LOSSLESS: "ISO_14495_1",
    JPEG_2000: "ISO_15444_1",
    pydicom_uid.JPEG2000MC: "ISO_15444_2",
    HTJ2K: "ISO_15444_15",
}


def is_native(transfer_syntax_uid: str) -> bool:
    return UID(transfer_syntax_uid) in NATIVE


def is_encapsulated(transfer_syntax_uid: str) -> bool:
    return UID(transfer_syntax_uid).is_encapsulated


@functools.cache
def _pydicom_coder_available(transfer_syntax_uid: str, encode: bool) -> bool:
    """Whether pydicom has a working decoder (or encoder) plugin for this syntax here."""
    lookup = get_encoder if encode else get_decoder
    try:
        return bool(lookup(UID(transfer_syntax_uid)).is_available)
    except NotImplementedError:
        return False


@functools.cache
def _htj2k_encoder_available() -> bool:
    # imagecodecs is a dependency; whether its build has OpenJPH is known only at run time.
    return bool(imagecodecs.HTJ2K.available)


def can_decode(transfer_syntax_uid: str) -> bool:
    """True when frames in this syntax can be decoded to pixels on this server."""
    uid = UID(str(transfer_syntax_uid).strip())
    return uid in NATIVE or _pydicom_coder_available(uid, encode=False)


def can_encode(transfer_syntax_uid: str) -> bool:
    """True when the server can produce this syntax (see ``output_syntaxes``)."""
    return UID(str(transfer_syntax_uid).strip()) in output_syntaxes()


def can_encode_frames(transfer_syntax_uid: str) -> bool:
    """True when single frames can be produced in this syntax (Deflated is whole-dataset only)."""
    uid = UID(str(transfer_syntax_uid).strip())
    return can_encode(uid) and uid != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN


# Syntaxes that may hold lossy or lossless data, produced here with the lossless encoder of
# their family: the codestream is valid for both UIDs and no information is lost.
LOSSLESS_ENCODER_OF = {
    JPEG_2000: JPEG_2000_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS: JPEG_LS_LOSSLESS,
    HTJ2K: HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL: HTJ2K_LOSSLESS,
}


@functools.cache
def output_syntaxes() -> frozenset[UID]:
    """Every transfer syntax the server can produce; what it writes is always lossless."""
    produced = {
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLICIT_VR_LITTLE_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    }
    for uid in (RLE_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_LS_LOSSLESS):
        if _pydicom_coder_available(uid, encode=True):
            produced.add(uid)
    if _htj2k_encoder_available():
        produced.add(HTJ2K_LOSSLESS)
    for uid, lossless in LOSSLESS_ENCODER_OF.items():
        if lossless in produced:
            produced.add(uid)
    return frozenset(produced)


# The syntaxes the Conformance Statement lists for retrieval (decoded and/or produced).
LISTED_SYNTAXES = (
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    *_JPEG_2000_FAMILY_LISTED,
    RLE_LOSSLESS,
)


# --- the rules both facades ask ----------------------------------------------------------


def passes_through(stored: str, target: str) -> bool:
    """The stored pixel bytes can be sent unchanged: the same syntax, or native little endian
    either way (Explicit, Implicit and Deflated VR Little Endian hold the same frame bytes)."""
    return stored == target or (stored in NATIVE_LITTLE_ENDIAN and target in NATIVE_LITTLE_ENDIAN)


@functools.lru_cache(maxsize=256)
def can_convert(stored: str, target: str) -> bool:
    """Whether a whole instance stored in ``stored`` can be sent in ``target``."""
    if stored == target:
        return True
    return can_decode(stored) and can_encode(target)


@functools.lru_cache(maxsize=256)
def can_convert_frames(stored: str, target: str) -> bool:
    """Whether frames stored in ``stored`` can be sent one by one in ``target``."""
    if passes_through(stored, target):
        return True
    return can_decode(stored) and can_encode_frames(target)


_NATIVE_PREFERENCE = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


def send_syntaxes(stored: str, accepted: Iterable[str]) -> list[str]:
    """The syntaxes to send an instance stored in ``stored`` in, best first, to a receiver
    that accepted ``accepted`` (C-MOVE / C-GET sub-operations): as stored when accepted;
    else Explicit then Implicit VR Little Endian, then any other accepted syntax this server
    can produce (the whole-instance converter may still refuse one: try the next)."""
    accepted = set(accepted)
    if stored in accepted:
        return [stored]
    natives = [ts for ts in _NATIVE_PREFERENCE if ts in accepted]
    others = sorted(ts for ts in accepted if ts not in _NATIVE_PREFERENCE and can_encode(ts))
    return natives + others
