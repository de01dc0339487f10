"""The documents endpoint (POST {root}/studies/{uid}/documents) against a real server on
SQLite and PostgreSQL: each kind of file becomes the right DICOM object, which passes
dciodvfy, is found by QIDO-RS, comes back from WADO-RS (the PDF byte for byte) and draws
a thumbnail; bad input gets a 4xx that names the problem."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type as content_type
from tessera.dicomweb.multipart_writer import new_boundary
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess
from tests.document_files import jpeg_bytes, mp4_bytes, multipart_body, pdf_bytes, png_bytes
from tests.document_server import DATABASES, document_archive
from tests.wado_data import parse_multipart

PATIENT = "DOCUMENT^PATIENT"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'

archive = pytest.fixture(scope="module", params=DATABASES)(document_archive)


def new_study(server: ServerProcess) -> StudySpec:
    spec = StudySpec(patient_name=PATIENT, patient_id="DOC-1", accession_number="ACC-DOC")
    boundary = new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=multipart_body([ct_image(spec, generate_uid(), 1, 16, 16)], boundary),
        headers={"Content-Type": content_type(boundary)},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return spec


def upload(
    server: ServerProcess,
    study_uid: str,
    name: str,
    data: bytes,
    media_type: str | None = None,
    title: str | None = "Scanned consent",
) -> httpx.Response:
    file = (name, data, media_type) if media_type else (name, data)
    fields = {"title": title} if title is not None else {}
    return httpx.post(
        f"{server.dicomweb}/studies/{study_uid}/documents",
        files={"file": file},
        data=fields,
        timeout=60,
    )


def retrieve(server: ServerProcess, stored: dict) -> pydicom.Dataset:
    response = httpx.get(stored["RetrieveURL"], headers={"Accept": MULTIPART_DICOM}, timeout=30)
    assert response.status_code == 200, response.text
    [(_, payload)] = parse_multipart(response.headers["content-type"], response.content)
    return pydicom.dcmread(io.BytesIO(payload))


def assert_valid_iod(dataset: pydicom.Dataset, tmp_path: Path) -> None:
    """dciodvfy (dicom3tools) finds no error in the object."""
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    path = tmp_path / "object.dcm"
    dataset.save_as(path, enforce_file_format=True)
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert not errors, result.stderr


def assert_copied_from_study(dataset: pydicom.Dataset, spec: StudySpec, stored: dict) -> None:
    assert dataset.StudyInstanceUID == spec.study_instance_uid
    assert str(dataset.PatientName) == PATIENT
    assert dataset.PatientID == "DOC-1"
    assert dataset.AccessionNumber == "ACC-DOC"
    assert dataset.StudyDate == spec.study_date
    assert dataset.SeriesInstanceUID == stored["SeriesInstanceUID"]
    assert dataset.SOPInstanceUID == stored["SOPInstanceUID"]


def test_pdf_becomes_encapsulated_pdf_returned_byte_for_byte(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    pdf = pdf_bytes(pages=3, filler=400)
    assert len(pdf) > 16 * 1024 and len(pdf) % 2 == 1  # bulk data, with padding to hide
    response = upload(archive, spec.study_instance_uid, "consent.pdf", pdf, "application/pdf")
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.104.1"
    assert response.headers["location"] == stored["RetrieveURL"]

    dataset = retrieve(archive, stored)
    assert_copied_from_study(dataset, spec, stored)
    assert dataset.Modality == "DOC"
    assert dataset.DocumentTitle == "Scanned consent"
    assert dataset.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert dataset.SeriesNumber == 2  # after the study's CT series
    assert_valid_iod(dataset, tmp_path)

    # QIDO-RS finds it in the study, as a DOC series.
    series = httpx.get(
        f"{archive.dicomweb}/studies/{spec.study_instance_uid}/series", timeout=30
    ).json()
    assert {s["00080060"]["Value"][0] for s in series} == {"CT", "DOC"}

    # The PDF as bulk data: application/pdf when asked, octet-stream otherwise; exact bytes.
    metadata = httpx.get(stored["RetrieveURL"] + "/metadata", timeout=30).json()[0]
    uri = metadata["00420011"]["BulkDataURI"]
    as_pdf = httpx.get(uri, headers={"Accept": "application/pdf"}, timeout=30)
    assert as_pdf.status_code == 200, as_pdf.text
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.content == pdf
    as_octets = httpx.get(uri, headers={"Accept": "application/octet-stream"}, timeout=30)
    assert as_octets.headers["content-type"] == "application/octet-stream"
    assert as_octets.content == pdf
    multipart = httpx.get(
        uri, headers={"Accept": 'multipart/related; type="application/pdf"'}, timeout=30
    )
    [(headers, payload)] = parse_multipart(multipart.headers["content-type"], multipart.content)
    assert headers["content-type"] == "application/pdf" and payload == pdf


def test_pdf_thumbnail_draws_the_first_page(archive) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    stored = upload(archive, spec.study_instance_uid, "a.pdf", pdf_bytes()).json()
    for path, box in (("/thumbnail", 128), ("/rendered?viewport=300,300", 300)):
        response = httpx.get(stored["RetrieveURL"] + path, headers={"Accept": "image/png"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        # A portrait page fitted into the box: full height, narrower than tall.
        assert image.height == box and image.width < image.height
        # White paper with the first page's black box.
        grey = image.convert("L")
        assert grey.getextrema() == (0, 255)
        assert grey.getpixel((image.width // 2, image.height // 5)) < 30


def test_broken_pdf_is_stored_and_its_thumbnail_says_it_cannot_be_drawn(archive) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    broken = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without an xref\n"
    response = upload(archive, spec.study_instance_uid, "broken.pdf", broken, "application/pdf")
    assert response.status_code == 201, response.text
    thumbnail = httpx.get(response.json()["RetrieveURL"] + "/thumbnail")
    assert thumbnail.status_code == 200
    assert Image.open(io.BytesIO(thumbnail.content)).size[1] == 128  # the placeholder page


def test_jpeg_becomes_vl_photographic_image_stored_as_is(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    jpeg = jpeg_bytes()
    response = upload(archive, spec.study_instance_uid, "wound.jpg", jpeg, "image/jpeg")
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.77.1.4"
    dataset = retrieve(archive, stored)
    assert_copied_from_study(dataset, spec, stored)
    assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert dataset.Modality == "XC" and (dataset.Rows, dataset.Columns) == (48, 64)
    assert_valid_iod(dataset, tmp_path)
    # The frame is the uploaded JPEG itself (no re-compression).
    frame = httpx.get(
        stored["RetrieveURL"] + "/frames/1",
        headers={"Accept": 'multipart/related; type="image/jpeg"'},
    )
    [(_, payload)] = parse_multipart(frame.headers["content-type"], frame.content)
    assert payload.rstrip(b"\x00") == jpeg.rstrip(b"\x00")


def test_png_and_progressive_jpeg_become_uncompressed_rgb(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    png = png_bytes()
    response = upload(archive, spec.study_instance_uid, "scan.png", png)
    assert response.status_code == 201, response.text
    dataset = retrieve(archive, response.json())
    assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert dataset.PhotometricInterpretation == "RGB"
    expected = Image.open(io.BytesIO(png)).convert("RGB")
    assert dataset.pixel_array.tobytes() == expected.tobytes()
    assert_valid_iod(dataset, tmp_path)

    progressive = upload(
        archive, spec.study_instance_uid, "p.jpg", jpeg_bytes(progressive=True), "image/jpeg"
    )
    assert progressive.status_code == 201, progressive.text
    dataset = retrieve(archive, progressive.json())
    assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert dataset.LossyImageCompression == "01"  # it was lossy before it came
    grey = upload(archive, spec.study_instance_uid, "g.png", png_bytes(mode="L"))
    assert retrieve(archive, grey.json()).PhotometricInterpretation == "MONOCHROME2"


def test_text_becomes_an_encapsulated_pdf(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    text = "Findings: none.\nΣημείωση — Привет\n".encode()
    response = upload(archive, spec.study_instance_uid, "notes.txt", text, "text/plain")
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["received"] == "text/plain" and stored["stored_as"] == "application/pdf"
    dataset = retrieve(archive, stored)
    assert bytes(dataset.EncapsulatedDocument).startswith(b"%PDF-")
    assert_valid_iod(dataset, tmp_path)
    thumbnail = httpx.get(stored["RetrieveURL"] + "/thumbnail")
    assert thumbnail.status_code == 200


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV makes the test MP4")
def test_mp4_becomes_video_photographic_image(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    mp4 = mp4_bytes(frames=12, fps=6)
    response = upload(archive, spec.study_instance_uid, "clip.mp4", mp4, "video/mp4")
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.77.1.4.1"
    dataset = retrieve(archive, stored)
    assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.102"
    assert (dataset.Rows, dataset.Columns, dataset.NumberOfFrames) == (48, 64, 12)
    assert float(dataset.FrameTime) == pytest.approx(1000 / 6, rel=0.01)
    assert_valid_iod(dataset, tmp_path)
    # One fragment after an empty Basic Offset Table: the MP4 file as it was sent.
    fragments = list(pydicom.encaps.generate_fragments(dataset.PixelData))
    assert fragments[-1].rstrip(b"\x00") == mp4.rstrip(b"\x00")


def _grey(response: httpx.Response) -> float:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return float(np.asarray(Image.open(io.BytesIO(response.content)).convert("L")).mean())


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV makes the test MP4")
def test_video_thumbnail_and_rendered_frames_are_decoded(archive) -> None:  # type: ignore[no-untyped-def]
    # Frame n (1-based) of the clip is a flat grey of (n - 1) * 20.
    spec = new_study(archive)
    mp4 = mp4_bytes(frames=12, fps=6, width=160, height=120)
    stored = upload(archive, spec.study_instance_uid, "clip.mp4", mp4, "video/mp4").json()
    url = stored["RetrieveURL"]
    thumbnail = httpx.get(f"{url}/thumbnail", timeout=60)
    assert _grey(thumbnail) < 8  # frame 1: black
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) == 128
    assert abs(_grey(httpx.get(f"{url}/frames/6/rendered", timeout=60)) - 100) < 8
    assert abs(_grey(httpx.get(f"{url}/frames/12/rendered", timeout=60)) - 220) < 8
    rendered = httpx.get(f"{url}/rendered", timeout=60)
    assert Image.open(io.BytesIO(rendered.content)).size == (160, 120)
    # The series thumbnail is the middle frame of its one instance.
    series = url.rsplit("/instances/", 1)[0]
    assert abs(_grey(httpx.get(f"{series}/thumbnail", timeout=60)) - 100) < 8
    assert httpx.get(f"{url}/frames/13/rendered", timeout=60).status_code == 404
    gif = httpx.get(f"{url}/rendered", headers={"Accept": "image/gif"}, timeout=60)
    assert gif.status_code == 406  # no animated GIF of a video (documents.md)


def test_undecodable_video_gets_a_placeholder(archive) -> None:  # type: ignore[no-untyped-def]
    """A Video Photographic Image whose stream FFmpeg cannot decode: stored, and its
    thumbnail is the placeholder page, never an error."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate

    spec = new_study(archive)
    dataset = pydicom.dcmread(io.BytesIO(ct_image(spec, generate_uid(), 1, 16, 16)))
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
    dataset.SOPInstanceUID = generate_uid()
    dataset.NumberOfFrames = 2
    dataset.FrameIncrementPointer = 0x00181063
    dataset.FrameTime = 100
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 3, "YBR_PARTIAL_420"
    dataset.PlanarConfiguration = 0
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit, dataset.PixelRepresentation = 7, 0
    dataset.PixelData = encapsulate([b"\x00\x00\x00\x18ftypisom" + b"garbage!" * 64])
    dataset["PixelData"].VR = "OB"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
    dataset.file_meta = meta
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    boundary = new_boundary()
    response = httpx.post(
        f"{archive.dicomweb}/studies",
        content=multipart_body([out.getvalue()], boundary),
        headers={"Content-Type": content_type(boundary)},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    url = (
        f"{archive.dicomweb}/studies/{spec.study_instance_uid}/series/"
        f"{dataset.SeriesInstanceUID}/instances/{dataset.SOPInstanceUID}"
    )
    thumbnail = httpx.get(f"{url}/thumbnail", timeout=60)
    assert thumbnail.status_code == 200
    assert Image.open(io.BytesIO(thumbnail.content)).size[1] == 128  # the placeholder page


def test_office_files_need_libreoffice(archive) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("soffice") or shutil.which("libreoffice"):
        pytest.skip("LibreOffice is installed here: the refusal cannot be seen")
    spec = new_study(archive)
    rtf = b"{\\rtf1\\ansi Hello}"
    response = upload(archive, spec.study_instance_uid, "letter.rtf", rtf, "application/rtf")
    assert response.status_code == 415
    assert "LibreOffice (soffice)" in response.json()["detail"]


@pytest.mark.parametrize(
    ("name", "data", "media_type", "title", "status", "says"),
    [
        ("x.pdf", b"", "application/pdf", "t", 400, "empty"),
        ("x.pdf", jpeg_bytes(), "application/pdf", "t", 415, "claims to be application/pdf"),
        ("x.jpg", b"%PDF-1.4\n", None, "t", 415, "claims to be image/jpeg"),
        ("x.bin", bytes(range(256)) * 4, "application/octet-stream", "t", 415, "not a supported"),
        ("x.exe", b"MZ\x90\x00", "application/x-msdownload", "t", 415, "not a supported"),
        ("x.pdf", pdf_bytes(), "application/pdf", None, 400, "title is required"),
        ("x.pdf", pdf_bytes(), "application/pdf", "a\\b", 400, "backslash"),
        ("x.pdf", pdf_bytes(), "application/pdf", "t" * 65, 400, "longer than 64"),
        ("x.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png", "t", 422, "cannot be decoded"),
        ("x.pdf", b"%PDF-" + b"0" * 3_000_000, "application/pdf", "t", 413, "limit"),
    ],
    # Named: the generated PDFs carry their creation time, and xdist workers must agree.
    ids=[
        "empty",
        "jpeg-sent-as-pdf",
        "pdf-named-jpg",
        "unknown-binary",
        "executable",
        "no-title",
        "backslash-title",
        "long-title",
        "broken-png",
        "too-large",
    ],
)
def test_bad_documents_get_a_clear_4xx(
    archive, name, data, media_type, title, status, says
) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    response = upload(archive, spec.study_instance_uid, name, data, media_type, title)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    series = httpx.get(f"{archive.dicomweb}/studies/{spec.study_instance_uid}/series").json()
    assert len(series) == 1  # nothing was stored


def test_requests_that_are_not_documents(archive) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    url = f"{archive.dicomweb}/studies/{spec.study_instance_uid}/documents"
    assert (
        httpx.post(url, content=b"%PDF-", headers={"Content-Type": "application/pdf"}).status_code
        == 415
    )
    assert httpx.post(url, data={"title": "no file"}, files={"x": ("a", b"")}).status_code == 400
    missing = upload(archive, generate_uid(), "a.pdf", pdf_bytes())
    assert missing.status_code == 404
    bad_uid = upload(archive, "1.2.abc", "a.pdf", pdf_bytes())
    assert bad_uid.status_code == 400
    truncated = httpx.post(
        url,
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n%PDF',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert truncated.status_code == 400
    assert archive.alive()


def test_upload_cli_sends_a_document(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import sys

    spec = new_study(archive)
    document = tmp_path / "Discharge letter.pdf"
    document.write_bytes(pdf_bytes())

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tessera.cli", "upload", "--url", archive.dicomweb, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = cli("--document", str(document), "--study", spec.study_instance_uid)
    assert done.returncode == 0, done.stderr
    stored = json.loads(done.stdout)
    assert stored["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.104.1"
    assert retrieve(archive, stored).DocumentTitle == "Discharge letter"
    missing = cli("--document", str(document), "--study", generate_uid())
    assert missing.returncode == 1 and "404" in missing.stderr
    assert cli("--document", str(document)).returncode == 2  # no --study
