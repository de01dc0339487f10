"""Read a DICOM Part 10 file's header once, at ingest, and check what the archive needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from tessera.storage.completeness import Incomplete, check_complete
from tessera.storage.frames import FrameIndex, PixelDataError, locate_frames
from tessera.storage.uids import uid_problem

# Failure Reason values (PS3.18 Table I.2-2; the Cxxx and A9xx ones are ours within the
# ranges the standard reserves, documented in conformance/CONFORMANCE.md).
CANNOT_UNDERSTAND = 0xC000
NOT_PART10 = 0xC001
TRUNCATED = 0xC002
WRONG_MEDIA_TYPE = 0xC003
STUDY_UID_MISMATCH = 0xC409
SERIES_IN_OTHER_STUDY = 0xC410
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
MISSING_OR_INVALID_UID = 0xA900
DUPLICATE_CONFLICT = 0x0111
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
SOURCE_NOT_ALLOWED = 0xC411
# The study, series or instance already holds data of sources the uploader cannot see.
UID_NOT_AVAILABLE = 0xC412
# The instance does not fit the order its upload named (another patient, another study).
ORDER_MISMATCH = 0xC413


class InstanceRejected(Exception):
    """An instance the archive will not store; carries its Failure Reason."""

    def __init__(
        self,
        reason: int,
        message: str,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


@dataclass
class ParsedInstance:
    dataset: Dataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    frames: FrameIndex | None
    pixel_data_vr: str | None
    file_size: int


def _text(dataset: Dataset, keyword: str) -> str | None:
    try:
        value = dataset.get(keyword)
    except Exception:
        return None
    if value is None:
        return None
    return str(value).strip().rstrip("\x00").strip() or None


def parse_part10(path: Path) -> ParsedInstance:
    """Parse the header (stopping before Pixel Data) and index the frames.

    Raises InstanceRejected with the matching Failure Reason for anything we cannot store.
    """
    file_size = os.path.getsize(path)
    with open(path, "rb") as fh:
        try:
            dataset = pydicom.dcmread(fh, stop_before_pixels=True)
        except InvalidDicomError as exc:
            raise InstanceRejected(NOT_PART10, f"not a DICOM Part 10 file: {exc}") from exc
        except (EOFError, OSError) as exc:
            raise InstanceRejected(TRUNCATED, f"file is truncated: {exc}") from exc
        except Exception as exc:
            raise InstanceRejected(CANNOT_UNDERSTAND, f"cannot parse DICOM header: {exc}") from exc
        position = fh.tell()

        sop_class_uid = _text(dataset, "SOPClassUID")
        sop_instance_uid = _text(dataset, "SOPInstanceUID")
        meta = dataset.file_meta
        transfer_syntax = _text(meta, "TransferSyntaxUID")
        problems = []
        for keyword, value in (
            ("SOPClassUID", sop_class_uid),
            ("SOPInstanceUID", sop_instance_uid),
            ("StudyInstanceUID", _text(dataset, "StudyInstanceUID")),
            ("SeriesInstanceUID", _text(dataset, "SeriesInstanceUID")),
        ):
            problem = uid_problem(value)
            if problem:
                problems.append(f"{keyword} {problem}")
        reported_class = sop_class_uid if uid_problem(sop_class_uid) is None else None
        reported_instance = sop_instance_uid if uid_problem(sop_instance_uid) is None else None
        if problems:
            raise InstanceRejected(
                MISSING_OR_INVALID_UID, "; ".join(problems), reported_class, reported_instance
            )
        if uid_problem(transfer_syntax) is not None:
            raise InstanceRejected(
                TRANSFER_SYNTAX_NOT_SUPPORTED,
                "file meta information has no valid TransferSyntaxUID",
                reported_class,
                reported_instance,
            )
        ts = UID(transfer_syntax)
        try:
            check_complete(fh, file_size, ts)
        except Incomplete as exc:
            raise InstanceRejected(
                TRUNCATED,
                f"file is truncated or malformed: {exc}",
                reported_class,
                reported_instance,
            ) from exc
        frames: FrameIndex | None = None
        pixel_vr: str | None = None
        deflated = ts == pydicom.uid.DeflatedExplicitVRLittleEndian
        if position < file_size and not deflated:
            fh.seek(position)
            head = fh.read(4)
            tag_bytes = b"\xe0\x7f\x10\x00" if ts.is_little_endian else b"\x7f\xe0\x00\x10"
            if head == tag_bytes:
                try:
                    frames, pixel_vr = locate_frames(fh, position, file_size, dataset, ts)
                except PixelDataError as exc:
                    raise InstanceRejected(
                        TRUNCATED, str(exc), reported_class, reported_instance
                    ) from exc
        elif deflated:
            pixel_vr = _deflated_pixel_vr(path)
    assert sop_class_uid and sop_instance_uid
    return ParsedInstance(
        dataset=dataset,
        transfer_syntax_uid=str(ts),
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        study_instance_uid=str(_text(dataset, "StudyInstanceUID")),
        series_instance_uid=str(_text(dataset, "SeriesInstanceUID")),
        frames=frames,
        pixel_data_vr=pixel_vr,
        file_size=file_size,
    )


def _deflated_pixel_vr(path: Path) -> str | None:
    """Deflated files have no usable byte offsets; read them whole to learn about Pixel Data."""
    try:
        full = pydicom.dcmread(path)
    except Exception as exc:
        raise InstanceRejected(TRUNCATED, f"deflated data set cannot be inflated: {exc}") from exc
    element = full.get((0x7FE0, 0x0010))
    return None if element is None else element.VR
