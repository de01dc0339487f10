"""Remembered element JSON (tessera/storage/element_json.py): the same DICOM JSON and the same
verdicts as converting every element afresh, over every file of pydicom's test set and
pydicom-data, read one after another (so later files meet what earlier ones left)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tessera.storage import element_json
from tessera.storage.dicom_json import instance_metadata
from tessera.storage.parse import InstanceRejected, parse_part10
from tests.conftest import dicom_testdata_files


def verdict_and_json(path: Path) -> tuple[str, bytes | None]:
    """What ingest would make of the file: its defect, or its DICOM JSON."""
    try:
        parsed = parse_part10(path)
    except InstanceRejected as exc:
        return f"rejected: {exc.defect.name}", None
    return "stored", instance_metadata(parsed)


def test_every_test_file_converts_as_if_nothing_were_remembered() -> None:
    files = dicom_testdata_files()
    assert len(files) > 100
    fresh = {}
    for path in files:
        element_json.forget()
        fresh[path] = verdict_and_json(path)
    element_json.forget()
    # Twice through all of them: the second pass meets every element of the first.
    for _ in range(2):
        for path in files:
            assert verdict_and_json(path) == fresh[path], path
    assert sum(v == "stored" for v, _ in fresh.values()) > 80


def part10(tmp_path: Path, name: str, **attributes: object) -> Path:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = "1.2.3.4"
    dataset.SeriesInstanceUID = "1.2.3.4.5"
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def test_the_same_bytes_in_another_character_set_read_differently(tmp_path: Path) -> None:
    element_json.forget()
    latin = part10(tmp_path, "latin.dcm", SpecificCharacterSet="ISO_IR 100")
    cyrillic = part10(tmp_path, "cyrillic.dcm", SpecificCharacterSet="ISO_IR 144")
    for path in (latin, cyrillic):
        data = bytearray(path.read_bytes())
        # The same raw Patient Name bytes in both files (0xFC: ü in Latin-1, ќ in Cyrillic).
        data += b"\x10\x00\x10\x00PN\x06\x00M\xfcller"
        path.write_bytes(bytes(data))
    first = verdict_and_json(latin)[1]
    second = verdict_and_json(cyrillic)[1]
    assert first is not None and second is not None
    assert "Müller".encode() in first
    assert "M\u045cller".encode() in second


@pytest.mark.parametrize("vr", [b"UL", b"XX"])
def test_a_bad_value_is_refused_after_a_good_one_of_the_same_tag(tmp_path: Path, vr: bytes) -> None:
    element_json.forget()
    good = part10(tmp_path, "good.dcm", Columns=512)
    assert verdict_and_json(good)[0] == "stored"
    assert verdict_and_json(good)[0] == "stored"
    bad = part10(tmp_path, "bad.dcm")
    # Columns (0028,0011) with a wrong (or unknown) VR for its 2-byte value.
    bad.write_bytes(bad.read_bytes() + b"\x28\x00\x11\x00" + vr + b"\x02\x00\x00\x02")
    assert verdict_and_json(bad)[0] == "rejected: UNPARSABLE"
