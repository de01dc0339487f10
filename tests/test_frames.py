"""Frame offsets found at ingest address exactly the frames pydicom finds, on files made by others."""

from __future__ import annotations

import warnings

import pydicom
import pytest
from pydicom.encaps import generate_frames

from tessera.storage.parse import InstanceRejected, parse_part10
from tests.conftest import dicom_testdata_files

FILES = dicom_testdata_files()


def _frames_of(path):  # type: ignore[no-untyped-def]
    try:
        return parse_part10(path)
    except InstanceRejected:
        return None


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_frame_offsets_match_pydicom(path) -> None:  # type: ignore[no-untyped-def]
    parsed = _frames_of(path)
    if parsed is None or parsed.frames is None:
        pytest.skip("no addressable frames")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path)
    raw = path.read_bytes()
    ours = [b"".join(raw[o : o + n] for o, n in frame) for frame in parsed.frames]
    try:
        frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
    except ValueError:
        pytest.skip("NumberOfFrames is not a number in this file")
    assert len(ours) == frame_count
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        expected = [
            bytes(f) for f in generate_frames(dataset.PixelData, number_of_frames=frame_count)
        ]
        assert ours == expected
    else:
        pixel_data = bytes(dataset.PixelData)
        assert b"".join(ours) == pixel_data[: sum(len(f) for f in ours)]
        # Every frame has the size the image attributes imply.
        assert len({len(f) for f in ours}) == 1
        assert len(ours[0]) * frame_count <= len(pixel_data)


def test_native_frame_count_and_size_from_generated_cine() -> None:
    import tempfile
    from pathlib import Path

    from pydicom.uid import generate_uid

    from tessera.synthetic import StudySpec, rgb_cine

    data = rgb_cine(StudySpec(), generate_uid(), frames=7, size=16)
    with tempfile.NamedTemporaryFile(suffix=".dcm") as fh:
        fh.write(data)
        fh.flush()
        parsed = parse_part10(Path(fh.name))
    assert parsed.frames is not None and len(parsed.frames) == 7
    assert all(len(frame) == 1 and frame[0][1] == 16 * 16 * 3 for frame in parsed.frames)
    offsets = [frame[0][0] for frame in parsed.frames]
    assert offsets == [offsets[0] + i * 768 for i in range(7)]
