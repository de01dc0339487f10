"""Read a DICOM Part 10 file's header once, at ingest, and check what the archive needs."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID

from tessera.storage import element_json
from tessera.storage.completeness import Incomplete, check_complete
from tessera.storage.frames import FrameIndex, PixelDataError, locate_frames
from tessera.storage.uids import uid_problem


class Defect(enum.Enum):
    """What is wrong with a file the archive will not store (services/failure_reasons.py
    turns it into the Failure Reason a client sees)."""

    UNPARSABLE = "the DICOM header cannot be parsed"
    NOT_PART10 = "not a DICOM Part 10 file"
    TRUNCATED = "truncated or malformed"
    MISSING_OR_INVALID_UID = "a required UID is missing or invalid"
    NO_TRANSFER_SYNTAX = "no valid Transfer Syntax UID"


class InstanceRejected(Exception):
    """An instance the archive will not store; carries what is wrong with it."""

    def __init__(
        self,
        defect: Defect,
        message: str,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.defect = defect
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
    # Top-level elements' encodings (storage/element_json.py), for their DICOM JSON.
    element_keys: dict[int, element_json.Key] = field(default_factory=dict)


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
            raise InstanceRejected(Defect.NOT_PART10, f"not a DICOM Part 10 file: {exc}") from exc
        except (EOFError, OSError) as exc:
            raise InstanceRejected(Defect.TRUNCATED, f"file is truncated: {exc}") from exc
        except Exception as exc:
            raise InstanceRejected(Defect.UNPARSABLE, f"cannot parse DICOM header: {exc}") from exc
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
                Defect.MISSING_OR_INVALID_UID,
                "; ".join(problems),
                reported_class,
                reported_instance,
            )
        if transfer_syntax is None or uid_problem(transfer_syntax) is not None:
            raise InstanceRejected(
                Defect.NO_TRANSFER_SYNTAX,
                "file meta information has no valid TransferSyntaxUID",
                reported_class,
                reported_instance,
            )
        ts = UID(transfer_syntax)
        try:
            element_keys = _decode_all(dataset)
        except Exception as exc:
            raise InstanceRejected(
                Defect.UNPARSABLE, str(exc), reported_class, reported_instance
            ) from exc
        try:
            check_complete(fh, file_size, ts)
        except Incomplete as exc:
            raise InstanceRejected(
                Defect.TRUNCATED,
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
                        Defect.TRUNCATED, str(exc), reported_class, reported_instance
                    ) from exc
                except (ValueError, TypeError, OverflowError) as exc:
                    # An image attribute the frame layout needs holds no usable number.
                    raise InstanceRejected(
                        Defect.UNPARSABLE,
                        f"cannot locate the frames: {exc}",
                        reported_class,
                        reported_instance,
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
        element_keys=element_keys,
    )


def _decode_all(dataset: Dataset, top_level: bool = True) -> dict[int, element_json.Key]:
    """Convert every element now, in sequences too, so that a value the bytes cannot give
    (a length that does not fit the VR, an unknown VR) rejects this instance here rather
    than failing later, when the index row or the DICOM JSON reads it. A top-level element
    whose very encoding converted before (storage/element_json.py) is known to convert.

    Returns the top-level elements' keys, taken while they were still raw."""
    keys: dict[int, element_json.Key] = {}
    charset = element_json.character_set(dataset) if top_level else b""
    for tag in list(dataset.keys()):
        if top_level:
            key = element_json.key_of(dataset, tag, charset)
            if key is not None:
                keys[tag] = key
                if element_json.known(key) is not None:
                    continue
        try:
            element = dataset[tag]
        except Exception as exc:
            raw = dataset.get_item(tag)
            vr = getattr(raw, "VR", None) or "?"
            raise ValueError(f"element {Tag(tag)} with VR {vr} cannot be read: {exc}") from exc
        if element.VR == "SQ":
            for item in element.value:
                _decode_all(item, top_level=False)
    return keys


def _deflated_pixel_vr(path: Path) -> str | None:
    """Deflated files have no usable byte offsets; read them whole to learn about Pixel Data."""
    try:
        full = pydicom.dcmread(path)
    except Exception as exc:
        raise InstanceRejected(
            Defect.TRUNCATED, f"deflated data set cannot be inflated: {exc}"
        ) from exc
    element = full.get((0x7FE0, 0x0010))
    return None if element is None else element.VR
