"""A resend is a duplicate, not a conflict: the same data set re-encoded by its sender
(STOW-RS then dcmtk's storescu, and back; explicit vs implicit VR; native vs RLE and
JPEG-LS lossless) is success with the first copy kept; a truly different object is still
refused (0x0111)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from tessera.storage.same_content import same_content
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, index_rows
from tests.dimse_support import SERVER_AET, add_peer, dcmtk, run, start_dimse_server
from tests.test_stow import edited, failed, reasons, stow


def _encoded(data: bytes, syntax: str) -> bytes:
    """The same data set in another transfer syntax (pixels compressed losslessly)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if syntax in (RLELossless, JPEGLSLossless):
        ds.compress(syntax, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    return out.getvalue()


def _stored(server: ServerProcess) -> list:
    return index_rows(server.database_url, "SELECT sha256, transfer_syntax_uid FROM instance")


def _storescu(server: ServerProcess, path: Path, propose: str) -> str:
    result = run(
        [
            dcmtk("storescu"),
            "-v",
            "-nh",
            propose,
            "-aet",
            "MODALITY",
            "-aec",
            SERVER_AET,
            "127.0.0.1",
            str(server.dimse_port),
            str(path),
        ]
    )
    return result.stdout + result.stderr


@pytest.fixture
def dimse_server(server_factory) -> ServerProcess:  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory)
    add_peer(server, "MODALITY")
    return server


def _image() -> bytes:
    study = StudySpec(patient_name="RESEND^TEST", patient_id="RESEND-1")
    return ct_image(study, generate_uid(), rows=32, columns=32)


# --- the comparison itself, over pydicom's own test files -----------------------------


def _file(ds: pydicom.Dataset, syntax: str | None = None) -> io.BytesIO:
    ds = pydicom.dcmread(io.BytesIO(_bytes(ds)))
    if syntax in (RLELossless, JPEGLSLossless):
        ds.compress(syntax, generate_instance_uid=False)
    elif syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    out.seek(0)
    return out


def _bytes(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, RLELossless, JPEGLSLossless])
def test_same_data_set_in_another_syntax_is_the_same_object(syntax: str) -> None:
    original = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(original)
    assert same_content(original, _file(ds, syntax))
    assert same_content(_file(ds, syntax), original)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless, JPEGLSLossless])
def test_one_pixel_or_one_attribute_makes_another_object(syntax: str) -> None:
    original = Path(get_testdata_file("CT_small.dcm"))
    pixels = pydicom.dcmread(original)
    array = pixels.pixel_array.copy()
    array[10, 10] += 1
    pixels.PixelData = array.tobytes()
    assert not same_content(original, _file(pixels, syntax))
    attribute = pydicom.dcmread(original)
    attribute.PatientName = "OTHER^PATIENT"
    assert not same_content(original, _file(attribute, syntax))


def test_lossy_copy_is_not_the_same_object() -> None:
    """A JPEG baseline file and its decoded pixels stored natively: equal pixels after
    decoding, but not a lossless re-encoding of each other."""
    lossy = Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    ds = pydicom.dcmread(lossy)
    ds.decompress()
    assert not same_content(lossy, _file(ds))


def test_private_elements_compare_across_vr_encodings() -> None:
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    block = original.private_block(0x0011, "TESSERA TEST", create=True)
    block.add_new(0x01, "LO", "private value")
    explicit = _file(original)
    implicit = _file(original, ImplicitVRLittleEndian)  # the private element becomes UN
    assert same_content(explicit, implicit)


# --- every pair of paths against a real server ----------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stow_then_storescu_implicit_is_a_duplicate(dimse_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = _image()
    assert stow(dimse_server, [data]).status_code == 200
    path = tmp_path / "resend.dcm"
    path.write_bytes(data)
    # storescu re-encodes the explicit VR file as implicit VR (the only syntax it proposes).
    output = _storescu(dimse_server, path, "-xi")
    assert "Received Store Response (Success)" in output, output
    assert _stored(dimse_server) == [(hashlib.sha256(data).hexdigest(), ExplicitVRLittleEndian)]
    assert len(list((dimse_server.data_dir / "blobs").rglob("*.dcm"))) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_storescu_then_stow_is_a_duplicate(dimse_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = _image()
    path = tmp_path / "first.dcm"
    path.write_bytes(data)
    output = _storescu(dimse_server, path, "-xi")
    assert "Received Store Response (Success)" in output, output
    [(first_sha, first_syntax)] = _stored(dimse_server)
    assert first_syntax == ImplicitVRLittleEndian
    for resend in (data, _encoded(data, RLELossless), _encoded(data, JPEGLSLossless)):
        response = stow(dimse_server, [resend])
        assert response.status_code == 200, response.text
        assert failed(response) == []
    assert _stored(dimse_server) == [(first_sha, ImplicitVRLittleEndian)]


@pytest.mark.parametrize("first_syntax", [RLELossless, JPEGLSLossless])
def test_compressed_then_native_and_back(server: ServerProcess, first_syntax: str) -> None:
    data = _image()
    first = _encoded(data, first_syntax)
    assert stow(server, [first]).status_code == 200
    for resend in (data, _encoded(data, ImplicitVRLittleEndian), first):
        response = stow(server, [resend])
        assert response.status_code == 200, response.text
    assert _stored(server) == [(hashlib.sha256(first).hexdigest(), first_syntax)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rle_stow_then_native_storescu(dimse_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = _image()
    first = _encoded(data, RLELossless)
    assert stow(dimse_server, [first]).status_code == 200
    path = tmp_path / "native.dcm"
    path.write_bytes(data)
    output = _storescu(dimse_server, path, "-xe")
    assert "Received Store Response (Success)" in output, output
    assert _stored(dimse_server) == [(hashlib.sha256(first).hexdigest(), RLELossless)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_truly_different_object_is_still_a_conflict(dimse_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = _image()
    assert stow(dimse_server, [data]).status_code == 200
    # Another attribute value, sent implicit VR by storescu: 0x0111.
    path = tmp_path / "changed.dcm"
    path.write_bytes(edited(data, StudyDescription="changed content"))
    output = _storescu(dimse_server, path, "-xi")
    assert "Received Store Response (Success)" not in output, output
    assert "Status: 0x111)" in output, output
    # One pixel changed, sent RLE compressed by STOW-RS: 0x0111.
    ds = pydicom.dcmread(io.BytesIO(data))
    pixels = ds.pixel_array.copy()
    pixels[0, 0] = np.uint16(pixels[0, 0] + 1)
    ds.PixelData = pixels.tobytes()
    out = io.BytesIO()
    ds.save_as(out)
    response = stow(dimse_server, [_encoded(out.getvalue(), RLELossless)])
    assert response.status_code == 409
    assert reasons(response) == [0x0111]
    assert _stored(dimse_server) == [(hashlib.sha256(data).hexdigest(), ExplicitVRLittleEndian)]
    assert len(list((dimse_server.data_dir / "blobs").rglob("*.dcm"))) == 1


def test_overwrite_policy_keeps_the_first_copy_of_a_resend(server: ServerProcess) -> None:
    from sqlalchemy import create_engine, text

    data = _image()
    assert stow(server, [data]).status_code == 200
    engine = create_engine(server.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE tenant SET duplicate_policy = 'overwrite'"))
    engine.dispose()
    assert stow(server, [_encoded(data, ImplicitVRLittleEndian)]).status_code == 200
    assert _stored(server) == [(hashlib.sha256(data).hexdigest(), ExplicitVRLittleEndian)]
    changed = edited(data, StudyDescription="corrected")
    assert stow(server, [changed]).status_code == 200
    assert _stored(server) == [(hashlib.sha256(changed).hexdigest(), ExplicitVRLittleEndian)]
