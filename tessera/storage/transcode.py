"""Decode, encode and transcode DICOM pixel data: one frame or a whole Part 10 instance.

Interface (stable; used by dicomweb/ for WADO-RS/WADO-URI and by scp/ for C-GET/C-MOVE):

- ``TranscodeError(Exception)``: anything that cannot be done (unknown or undecodable
  source syntax, a target the server cannot produce, pixels an encoder refuses, corrupt
  data, a frame whose pixel description is missing). The only "cannot convert" type:
  WADO turns it into 406, C-MOVE/C-GET into a failed sub-operation.
- Which syntaxes pass through unchanged or can be converted is decided in
  ``storage/syntaxes.py`` (``passes_through``, ``can_convert``, ``can_convert_frames``).
- ``can_decode(transfer_syntax_uid) -> bool``, ``can_encode(transfer_syntax_uid) -> bool``,
  ``can_encode_frames(transfer_syntax_uid) -> bool`` (Deflated is whole-instance only),
  ``output_syntaxes() -> frozenset[UID]``: explicit VR LE, implicit VR LE, deflated
  explicit VR LE, RLE Lossless, JPEG 2000 Lossless, JPEG-LS Lossless (pyjpegls), HTJ2K
  Lossless and HTJ2K Lossless RPCL (imagecodecs/OpenJPH), and the "may be lossy"
  syntaxes JPEG 2000 (.91), JPEG-LS Near-Lossless (.81) and HTJ2K (.203), which get the
  lossless codestream of their family. Everything produced is lossless.
- ``decode_frame(frame, transfer_syntax_uid, pixel) -> numpy.ndarray``: one frame's bytes
  as stored (encapsulated: the concatenated fragments of that frame; native: the frame's
  bytes in the stored byte order) to an array shaped (rows, columns) or
  (rows, columns, samples), pixel-interleaved, dtype sized by Bits Allocated (bit-packed
  1-bit data unpacked to uint8), described by ``decoded_description``.
- ``decode_dataset_frame(dataset, index) -> numpy.ndarray``: frame ``index`` (0-based) of
  a dataset read whole (deflated, bit-packed, or fragments without a usable offset
  table), with the same layout and colour rule as ``decode_frame``.
- ``decoded_description(pixel, transfer_syntax_uid) -> PixelDescription``: what
  ``decode_frame`` returns: Planar Configuration 0 and the photometric interpretation
  after decoding (see "Colour" below).
- ``encode_frame(array, pixel, target_transfer_syntax_uid) -> bytes``: ``pixel`` describes
  ``array`` (for an array from decode_frame pass ``decoded_description(...)``). Native
  targets give little endian bytes in the frame's own layout (pixel-interleaved).
- ``encoded_description(pixel, target_transfer_syntax_uid) -> PixelDescription``: the
  description of what ``encode_frame`` produced (JPEG 2000 / HTJ2K lossless of RGB uses
  the reversible colour transform, so the result is YBR_RCT).
- ``transcode_frame(frame, source_ts, target_ts, pixel) -> bytes``: decode + encode; the
  same syntax (or any two little endian native syntaxes) returns the frame unchanged.
- ``transcoded_description(pixel, source_ts, target_ts) -> PixelDescription``: the
  description of what ``transcode_frame`` returns: use it for the Photometric
  Interpretation a client needs (e.g. a ``application/octet-stream`` frame of a stored
  JPEG baseline YBR_FULL_422 image is RGB).
- ``transcode_instance(source, target_ts) -> bytes``: a complete Part 10 file (source:
  path, bytes or binary file) in the target syntax with every frame, see "Attributes".

Colour: JPEG lossy processes (baseline/extended) are decoded to RGB, as every viewer
shows them (the codec's YCbCr conversion is part of that lossy pipeline). Every other
syntax keeps the stored samples exactly: YBR_FULL stays YBR_FULL, native YBR_FULL_422 is
upsampled to YBR_FULL (no value changes), JPEG 2000 YBR_RCT/YBR_ICT come out of the codec
as RGB. Output is always pixel-interleaved (Planar Configuration 0).

Deflated and big endian are whole-dataset syntaxes. A big endian native frame read at
its stored offset decodes here (its bytes are swapped). Deflated files have no frame
offsets (the index stores none): read the whole dataset with pydicom, or call
``transcode_instance(path, EXPLICIT_VR_LITTLE_ENDIAN)`` and take frames from that; a
frame passed with the Deflated UID is taken to be inflated (little endian native) bytes.

Attributes (transcode_instance): the SOP Instance UID never changes, because no lossy
compression is ever applied here (PS3.5 §8.2 / PS3.3 C.7.6.1.1.5 require a new UID only
when a lossy compression is applied). A source that is lossy (Lossy Image Compression
"01", a lossy syntax such as JPEG baseline, or a JPEG 2000 / JPEG-LS near-lossless
codestream that is irreversible) keeps or gains Lossy Image Compression "01", and gains
Lossy Image Compression Method and Ratio from the source syntax when it had none:
decompressing never makes an image "lossless". Photometric Interpretation and Planar
Configuration follow the Colour rule, Extended Offset Table is dropped, Pixel Data is
OB (8-bit or encapsulated) or OW.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import UID

from tessera.storage import lossy, syntaxes
from tessera.storage.pixels import PixelDescription
from tessera.storage.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    can_decode,
    can_encode,
    can_encode_frames,
    output_syntaxes,
)

__all__ = [
    "TranscodeError",
    "can_decode",
    "can_encode",
    "can_encode_frames",
    "output_syntaxes",
    "decode_frame",
    "decode_dataset_frame",
    "decoded_description",
    "encode_frame",
    "encoded_description",
    "transcode_frame",
    "transcoded_description",
    "transcode_instance",
]


class TranscodeError(Exception):
    """The pixel data cannot be decoded, encoded or transcoded as asked: the one "cannot
    convert" error of both facades (WADO answers 406, C-MOVE/C-GET count a failed
    sub-operation)."""


def _uid(transfer_syntax_uid: str) -> UID:
    return UID(str(transfer_syntax_uid).strip().rstrip("\x00"))


def _uses_rgb_decoding(uid: UID) -> bool:
    return uid in syntaxes.JPEG_LOSSY_FAMILY


def decoded_description(pixel: PixelDescription, transfer_syntax_uid: str) -> PixelDescription:
    """Describe the array ``decode_frame`` returns for frames described by ``pixel``."""
    uid = _uid(transfer_syntax_uid)
    photometric = pixel.photometric_interpretation
    if pixel.samples_per_pixel == 3:
        if _uses_rgb_decoding(uid) and photometric.startswith("YBR"):
            photometric = "RGB"
        elif uid in syntaxes.JPEG_2000_FAMILY and photometric in ("YBR_RCT", "YBR_ICT"):
            photometric = "RGB"
        elif photometric == "YBR_FULL_422":
            photometric = "YBR_FULL"
    return pixel.replace(photometric_interpretation=photometric, planar_configuration=0)


def encoded_description(
    pixel: PixelDescription, target_transfer_syntax_uid: str
) -> PixelDescription:
    """Describe the frame ``encode_frame(array, pixel, target)`` produces."""
    uid = _uid(target_transfer_syntax_uid)
    uid = syntaxes.LOSSLESS_ENCODER_OF.get(uid, uid)
    photometric = pixel.photometric_interpretation
    if uid in (syntaxes.JPEG_2000_LOSSLESS, syntaxes.HTJ2K_LOSSLESS) and photometric == "RGB":
        photometric = "YBR_RCT"
    return pixel.replace(photometric_interpretation=photometric, planar_configuration=0)


def transcoded_description(
    pixel: PixelDescription, source_transfer_syntax_uid: str, target_transfer_syntax_uid: str
) -> PixelDescription:
    """Describe the frame ``transcode_frame`` returns for these syntaxes."""
    source, target = _uid(source_transfer_syntax_uid), _uid(target_transfer_syntax_uid)
    if syntaxes.passes_through(source, target):
        return pixel
    return encoded_description(decoded_description(pixel, source), target)


def _frame_options(pixel: PixelDescription) -> dict:
    options = pixel.decode_options()
    options["number_of_frames"] = 1
    options["pixel_keyword"] = "PixelData"
    return options


def decode_frame(
    frame: bytes,
    transfer_syntax_uid: str,
    pixel: PixelDescription,
    *,
    pixel_data_vr: str | None = None,
) -> np.ndarray:
    """Decode one stored frame to pixels (see the module docstring for the layout).

    ``pixel_data_vr`` matters only for big endian 8-bit data, whose bytes an OW element
    stores swapped in pairs (ingest records the VR).
    """
    uid = _uid(transfer_syntax_uid)
    if uid == syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        uid = EXPLICIT_VR_LITTLE_ENDIAN  # the caller inflated the dataset to get the frame
    if not can_decode(uid):
        raise TranscodeError(f"cannot decode transfer syntax {uid}")
    options = _frame_options(pixel)
    if uid in syntaxes.NATIVE:
        if pixel.frame_length and len(frame) < pixel.frame_length:
            raise TranscodeError(
                f"native frame has {len(frame)} bytes, expected {pixel.frame_length}"
            )
        source: bytes = frame
        if (
            uid == syntaxes.EXPLICIT_VR_BIG_ENDIAN
            and pixel.bits_allocated == 8
            and pixel_data_vr == "OW"
        ):
            if len(frame) % 2:
                raise TranscodeError(
                    "odd-length 8-bit frames in big endian OW data straddle words: "
                    "decode the whole instance"
                )
            source = np.frombuffer(frame, ">u2").astype("<u2").tobytes()
    else:
        source = encapsulate([bytes(frame)])
    try:
        array, _ = get_decoder(uid).as_array(source, raw=not _uses_rgb_decoding(uid), **options)
    except Exception as exc:  # codecs raise many types; all mean "cannot decode this"
        raise TranscodeError(f"cannot decode frame ({uid.name}): {exc}") from exc
    return _native_order(array)


def _native_order(array: np.ndarray) -> np.ndarray:
    # Big endian sources decode to big endian dtypes; encoders expect the machine's order.
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


def decode_dataset_frame(dataset: Dataset, index: int) -> np.ndarray:
    """Frame ``index`` (0-based) of a dataset read whole, laid out as ``decode_frame``'s.

    For objects whose frames have no stored offsets (deflated, bit-packed, fragments that
    cannot be grouped): the colour rule is the same as ``decode_frame``'s, so
    ``decoded_description`` describes the result here too.
    """
    meta = getattr(dataset, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise TranscodeError("the dataset has no Transfer Syntax UID")
    uid = _uid(meta.TransferSyntaxUID)
    if not can_decode(uid):
        raise TranscodeError(f"cannot decode transfer syntax {uid}")
    try:
        array, _ = get_decoder(uid).as_array(dataset, index=index, raw=not _uses_rgb_decoding(uid))
    except Exception as exc:
        raise TranscodeError(f"cannot decode frame {index + 1} ({uid.name}): {exc}") from exc
    return _native_order(array)


def _native_bytes(array: np.ndarray, pixel: PixelDescription) -> bytes:
    if pixel.bits_allocated == 1:
        from pydicom.pixels import pack_bits

        return pack_bits(array, pad=False)
    signed = pixel.pixel_representation == 1
    kinds = {
        8: "i1" if signed else "u1",
        16: "<i2" if signed else "<u2",
        32: "<i4" if signed else "<u4",
    }
    kind = kinds.get(pixel.bits_allocated)
    if kind is None:
        raise TranscodeError(
            f"cannot write native pixels with Bits Allocated {pixel.bits_allocated}"
        )
    if pixel.photometric_interpretation == "YBR_FULL_422":
        raise TranscodeError("encode_frame needs full-resolution samples, not YBR_FULL_422")
    return np.ascontiguousarray(array).astype(kind, copy=False).tobytes()


def _encode_htj2k(array: np.ndarray, pixel: PixelDescription) -> bytes:
    """HTJ2K lossless, always in the HTJ2K Lossless RPCL form (PS3.5 §10.18): RPCL
    progression (OpenJPH's default), TLM markers, and enough wavelet decompositions for
    the lowest resolution to be at most 64 pixels, so one codestream serves all three
    HTJ2K transfer syntaxes and viewers can stream thumbnails from it."""
    import imagecodecs

    if pixel.bits_allocated not in (8, 16) or pixel.bits_stored > 16:
        raise TranscodeError("HTJ2K output supports Bits Allocated 8 or 16 only")
    data = np.ascontiguousarray(array)
    rgb = pixel.samples_per_pixel == 3 and pixel.photometric_interpretation == "RGB"
    largest = max(pixel.rows, pixel.columns)
    decompositions = max(5, int(np.ceil(np.log2(max(largest, 64) / 64))))
    try:
        return bytes(
            imagecodecs.htj2k_encode(
                data,
                level=0,
                reversible=True,
                rgb=rgb,
                tlm=True,
                resolutions=decompositions + 1,
            )
        )
    except Exception as exc:
        raise TranscodeError(f"HTJ2K encoder refused the frame: {exc}") from exc


def _encode_small_j2k(array: np.ndarray, pixel: PixelDescription) -> bytes:
    """JPEG 2000 lossless of an image under 32 pixels wide or high.

    pylibjpeg-openjpeg always asks for 6 resolutions, which needs 32 pixels; imagecodecs
    (the same OpenJPEG) lets the resolution count follow the size.
    """
    import imagecodecs

    resolutions = max(1, min(6, int(np.log2(max(1, min(pixel.rows, pixel.columns)))) + 1))
    try:
        return bytes(
            imagecodecs.jpeg2k_encode(
                np.ascontiguousarray(array),
                level=0,
                codecformat="J2K",
                reversible=True,
                resolutions=resolutions,
                bitspersample=pixel.bits_stored,
                mct=pixel.photometric_interpretation == "RGB",
            )
        )
    except Exception as exc:
        raise TranscodeError(f"JPEG 2000 encoder refused the frame: {exc}") from exc


def encode_frame(
    array: np.ndarray, pixel: PixelDescription, target_transfer_syntax_uid: str
) -> bytes:
    """Encode one frame's pixels (described by ``pixel``) in the target syntax."""
    uid = _uid(target_transfer_syntax_uid)
    if not can_encode_frames(uid):
        raise TranscodeError(f"cannot encode frames in transfer syntax {uid}")
    if pixel.photometric_interpretation == "YBR_FULL_422" and array.ndim == 3:
        pixel = pixel.replace(photometric_interpretation="YBR_FULL")  # already upsampled
    pixel = pixel.replace(planar_configuration=0)
    if uid in syntaxes.NATIVE:
        return _native_bytes(array, pixel)
    uid = syntaxes.LOSSLESS_ENCODER_OF.get(uid, uid)
    if uid == syntaxes.HTJ2K_LOSSLESS:
        return _encode_htj2k(array, pixel)
    options = _frame_options(pixel)
    if uid == syntaxes.JPEG_2000_LOSSLESS:
        if min(pixel.rows, pixel.columns) < 32:
            return _encode_small_j2k(array, pixel)
        options["use_mct"] = pixel.photometric_interpretation == "RGB"
    try:
        return get_encoder(uid).encode(np.ascontiguousarray(array), **options)
    except Exception as exc:
        raise TranscodeError(f"{uid.name} encoder refused the frame: {exc}") from exc


def transcode_frame(
    frame: bytes,
    source_transfer_syntax_uid: str,
    target_transfer_syntax_uid: str,
    pixel: PixelDescription,
) -> bytes:
    """One stored frame in another syntax (unchanged when no transcoding is needed)."""
    source, target = _uid(source_transfer_syntax_uid), _uid(target_transfer_syntax_uid)
    if syntaxes.passes_through(source, target):
        return bytes(frame)
    if not can_encode_frames(target):
        raise TranscodeError(f"cannot produce frames in transfer syntax {target}")
    array = decode_frame(frame, source, pixel)
    return encode_frame(array, decoded_description(pixel, source), target)


# --- whole instances -------------------------------------------------------------------

_PIXEL_DATA_TAG = 0x7FE00010


def _read(source: str | os.PathLike | bytes | BinaryIO) -> tuple[Dataset, bytes | None]:
    """The dataset and, when cheap, the original bytes (for a no-change answer)."""
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            raw = bytes(source)
            return pydicom.dcmread(io.BytesIO(raw)), raw
        if isinstance(source, str | os.PathLike):
            raw = Path(source).read_bytes()
            return pydicom.dcmread(io.BytesIO(raw)), raw
        return pydicom.dcmread(source), None
    except Exception as exc:
        raise TranscodeError(f"cannot read the DICOM file: {exc}") from exc


def _write(ds: Dataset, target: UID) -> bytes:
    ds.file_meta.TransferSyntaxUID = target
    buffer = io.BytesIO()
    try:
        # dcmwrite, not save_as: save_as refuses big -> little endian on purpose, and
        # _swap_words below has already handled what that refusal protects.
        pydicom.dcmwrite(
            buffer,
            ds,
            implicit_vr=target.is_implicit_VR,
            little_endian=True,
            enforce_file_format=True,
        )
    except Exception as exc:
        raise TranscodeError(f"cannot write the dataset as {target.name}: {exc}") from exc
    return buffer.getvalue()


def _swap_words(ds: Dataset) -> None:
    """Byte-swap OW values (other than Pixel Data) read from a big endian file."""
    for element in ds.iterall():
        if (
            element.VR == "OW"
            and element.tag != _PIXEL_DATA_TAG
            and isinstance(element.value, bytes)
        ):
            element.value = np.frombuffer(element.value, ">u2").astype("<u2").tobytes()


def _stored_frames(ds: Dataset, source: UID, pixel: PixelDescription) -> list[bytes] | None:
    """Each frame's stored bytes, or None when frames must be decoded from the dataset."""
    data = ds.PixelData
    if source.is_encapsulated:
        try:
            frames = list(generate_frames(data, number_of_frames=pixel.number_of_frames))
        except Exception as exc:
            raise TranscodeError(f"cannot split the encapsulated Pixel Data: {exc}") from exc
        if len(frames) != pixel.number_of_frames:
            raise TranscodeError(
                f"Pixel Data holds {len(frames)} frames, Number of Frames says "
                f"{pixel.number_of_frames}"
            )
        return frames
    length = pixel.frame_length
    if not length or len(data) < length * pixel.number_of_frames:
        return None
    return [data[i * length : (i + 1) * length] for i in range(pixel.number_of_frames)]


def _decoded_frames(
    ds: Dataset, source: UID, pixel: PixelDescription, stored: list[bytes] | None
) -> Iterator[np.ndarray]:
    # Big endian 8-bit data may sit in an OW element (bytes swapped in pairs), which only
    # the dataset-level decoder knows; deflated data has no stored frames of its own.
    if stored is not None and source not in (
        syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        syntaxes.EXPLICIT_VR_BIG_ENDIAN,
    ):
        for frame in stored:
            yield decode_frame(frame, source, pixel)
        return
    try:
        for array, _ in get_decoder(source).iter_array(ds, raw=not _uses_rgb_decoding(source)):
            yield _native_order(array)
    except TranscodeError:
        raise
    except Exception as exc:
        raise TranscodeError(f"cannot decode the pixel data ({source.name}): {exc}") from exc


def _mark_lossy(
    ds: Dataset, source: UID, pixel: PixelDescription, stored: list[bytes] | None
) -> None:
    """Keep or add the lossy marks of a lossy source (never reset "01")."""
    first = stored[0] if stored and source.is_encapsulated else None
    lengths = [len(frame) for frame in stored] if stored else None
    mark_lossy(ds, source, pixel, first, lengths)


def mark_lossy(
    ds: Dataset,
    source: UID,
    pixel: PixelDescription,
    first_frame: bytes | None,
    frame_lengths: list[int] | None,
) -> None:
    """Keep or add the lossy marks of a lossy source (never reset "01"): ``first_frame``
    is the first stored frame of an encapsulated source, ``frame_lengths`` the stored
    length of each frame (None when unknown)."""
    if not lossy.is_lossy(ds.get("LossyImageCompression"), source, first_frame):
        return
    ds.LossyImageCompression = "01"
    method = syntaxes.COMPRESSION_METHOD.get(source)
    if method and "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = method
        if frame_lengths and "LossyImageCompressionRatio" not in ds:
            compressed = sum(frame_lengths)
            original = (
                pixel.rows
                * pixel.columns
                * pixel.samples_per_pixel
                * ((pixel.bits_allocated + 7) // 8)
                * len(frame_lengths)
            )
            if compressed:
                ds.LossyImageCompressionRatio = f"{original / compressed:.2f}"[:16]


def transcode_instance(
    source: str | os.PathLike | bytes | BinaryIO, target_transfer_syntax_uid: str
) -> bytes:
    """A complete Part 10 file of ``source`` in the target syntax (all frames)."""
    target = _uid(target_transfer_syntax_uid)
    if not can_encode(target):
        raise TranscodeError(f"cannot produce transfer syntax {target}")
    ds, original = _read(source)
    meta = getattr(ds, "file_meta", None)
    source_ts = (
        _uid(meta.TransferSyntaxUID)
        if meta is not None and "TransferSyntaxUID" in meta
        else EXPLICIT_VR_LITTLE_ENDIAN
    )
    if source_ts == target and original is not None:
        return original
    if "PixelData" not in ds:
        if target.is_encapsulated:
            raise TranscodeError(f"the instance has no Pixel Data to encode as {target.name}")
        return _write(ds, target)
    if not can_decode(source_ts):
        raise TranscodeError(f"cannot decode transfer syntax {source_ts}")
    if source_ts in syntaxes.NATIVE_LITTLE_ENDIAN and target in syntaxes.NATIVE_LITTLE_ENDIAN:
        return _write(ds, target)
    try:
        pixel = PixelDescription.from_dataset(ds)
    except ValueError as exc:
        raise TranscodeError(str(exc)) from exc
    stored = _stored_frames(ds, source_ts, pixel)
    if source_ts == syntaxes.EXPLICIT_VR_BIG_ENDIAN:
        _swap_words(ds)
    _mark_lossy(ds, source_ts, pixel, stored)
    decoded = decoded_description(pixel, source_ts)
    frame_target = target if target.is_encapsulated else EXPLICIT_VR_LITTLE_ENDIAN
    encoded = encoded_description(decoded, frame_target)
    frames = (
        encode_frame(array, decoded, frame_target)
        for array in _decoded_frames(ds, source_ts, pixel, stored)
    )
    if target.is_encapsulated:
        ds.PixelData = encapsulate(list(frames), has_bot=True)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        data = b"".join(frames)
        if len(data) % 2:
            data += b"\x00"
        ds.PixelData = data
        ds["PixelData"].VR = "OB" if encoded.bits_allocated <= 8 else "OW"
        ds["PixelData"].is_undefined_length = False
    describe_encoded(ds, encoded)
    return _write(ds, target)


def describe_encoded(ds: Dataset, encoded: PixelDescription) -> None:
    """The pixel attributes of converted Pixel Data (offset tables of the source dropped)."""
    ds.PhotometricInterpretation = encoded.photometric_interpretation
    if encoded.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
