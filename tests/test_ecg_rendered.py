"""Rendered and thumbnail of an ECG waveform (12-lead ECG Waveform Storage): pydicom's own
test file `waveform_ecg.dcm` (a real recording made by others) is stored with STOW-RS on a
real server (SQLite and PostgreSQL), and drawn as a tracing; a waveform that cannot be read
gets the placeholder page, never a 500."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type as content_type
from tessera.dicomweb.multipart_writer import new_boundary
from tests.document_files import multipart_body
from tests.document_server import DATABASES, document_archive

archive = pytest.fixture(scope="module", params=DATABASES)(document_archive)


def ecg_file() -> pydicom.Dataset:
    path = get_testdata_file("waveform_ecg.dcm")
    assert path is not None, "pydicom's test data lacks waveform_ecg.dcm"
    return pydicom.dcmread(path)


def store(server, ds: pydicom.Dataset) -> str:  # type: ignore[no-untyped-def]
    """STOW-RS the dataset under fresh UIDs; its instance URL."""
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    boundary = new_boundary()
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=multipart_body([out.getvalue()], boundary),
        headers={"Content-Type": content_type(boundary), "Accept": "application/dicom+json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return (
        f"{server.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def fetch(url: str, accept: str | None = None) -> Image.Image:
    response = httpx.get(url, headers={"Accept": accept} if accept else {}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == (accept or "image/jpeg")
    return Image.open(io.BytesIO(response.content))


def dark_fraction(image: Image.Image) -> float:
    grey = np.asarray(image.convert("L"))
    return float((grey < 100).mean())


def test_ecg_is_drawn_as_a_tracing(archive) -> None:  # type: ignore[no-untyped-def]
    ds = ecg_file()
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG
    instance = store(archive, ds)
    rendered = fetch(instance + "/rendered", "image/png")
    assert rendered.format == "PNG"
    # 10 s at 25 mm/s beside the labels, 12 strips of 30 mm (4 px/mm): wide and tall.
    assert 800 <= rendered.width <= 1400 and 1000 <= rendered.height <= 1800
    grey = np.asarray(rendered.convert("L"))
    assert np.median(grey) > 200  # light paper
    assert 0.005 < dark_fraction(rendered) < 0.2  # dark tracing, not a filled box
    # Every strip (one per lead) holds a tracing.
    strip = rendered.height // 12
    for lead in range(12):
        band = grey[lead * strip : (lead + 1) * strip, 60:]
        assert (band < 100).sum() > 500, f"lead {lead + 1} is blank"
    jpeg = fetch(instance + "/rendered")
    assert jpeg.format == "JPEG" and jpeg.size == rendered.size
    for url in (instance + "/thumbnail", instance.rsplit("/instances/", 1)[0] + "/thumbnail"):
        thumbnail = fetch(url, "image/png")
        assert thumbnail.height == 128 and 60 <= thumbnail.width < 128  # portrait, fitted
        assert 0.01 < dark_fraction(thumbnail) < 0.5
    viewport = fetch(instance + "/rendered?viewport=400,400")
    assert max(viewport.size) == 400


def test_undrawable_waveform_gets_the_placeholder(archive) -> None:  # type: ignore[no-untyped-def]
    ds = ecg_file()
    for group in ds.WaveformSequence:
        del group.WaveformData
    instance = store(archive, ds)
    for path in ("/thumbnail", "/rendered"):
        image = fetch(instance + path, "image/png")
        assert image.size[1] in (128, 594)  # the A4 placeholder page
        assert dark_fraction(image) < 0.05
