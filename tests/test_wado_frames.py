"""WADO-RS frames over HTTP: OHIF's exact request, pass-through byte for byte, native frames
equal to pydicom's decoding, frame lists, many frames at once, bad frame lists."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from tests.wado_data import StoredObject, parse_multipart
from tests.wado_fixtures import WadoServer

OHIF_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
FRAMED = [
    "ct1",
    "mr_rle",
    "cine",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG-LL.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
]


def stored_frames(stored: StoredObject) -> list[bytes]:
    """What pydicom says the frames are, as stored (encapsulated: the codestreams)."""
    dataset = pydicom.dcmread(io.BytesIO(stored.data))
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(dataset.PixelData, number_of_frames=count))
    size = len(dataset.PixelData) // count
    return [dataset.PixelData[i * size : (i + 1) * size] for i in range(count)]


def frames_url(wado: WadoServer, name: str, frames: str) -> str:
    return f"{wado.get(name).path(wado.root)}/frames/{frames}"


@pytest.mark.parametrize("name", FRAMED)
def test_ohif_request_passes_frames_through(wado: WadoServer, name: str) -> None:
    stored = wado.get(name)
    expected = stored_frames(stored)
    with httpx.Client(timeout=30) as client:
        for number in range(1, len(expected) + 1):
            response = client.get(
                frames_url(wado, name, str(number)), headers={"Accept": OHIF_ACCEPT}
            )
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(
                'multipart/related; type="application/octet-stream"'
            )
            ((headers, payload),) = parse_multipart(
                response.headers["content-type"], response.content
            )
            assert payload == expected[number - 1]
            assert headers["content-type"] == (
                f"application/octet-stream; transfer-syntax={stored.transfer_syntax}"
            )


def test_native_frames_equal_pydicom_decoding(wado: WadoServer) -> None:
    for name in ("ct1", "cine"):
        stored = wado.get(name)
        full = pydicom.dcmread(io.BytesIO(stored.data))
        pixels = full.pixel_array
        count = int(full.get("NumberOfFrames", 1) or 1)
        numbers = ",".join(str(i) for i in range(1, count + 1))
        response = httpx.get(frames_url(wado, name, numbers))  # default: uncompressed
        parts = parse_multipart(response.headers["content-type"], response.content)
        assert len(parts) == count
        for index, (_, payload) in enumerate(parts):
            expected = pixels[index] if count > 1 else pixels
            got = np.frombuffer(payload, dtype=expected.dtype).reshape(expected.shape)
            assert np.array_equal(got, expected)


def test_frame_list_order_and_repeats(wado: WadoServer) -> None:
    name = "emri_small_RLE.dcm"
    expected = stored_frames(wado.get(name))
    response = httpx.get(frames_url(wado, name, "1,3,5,3"), headers={"Accept": OHIF_ACCEPT})
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert [p for _, p in parts] == [expected[0], expected[2], expected[4], expected[2]]


def test_compressed_media_type_pass_through(wado: WadoServer) -> None:
    name = "emri_small_jpeg_2k_lossless.dcm"
    expected = stored_frames(wado.get(name))
    for accept in (
        "multipart/related; type=image/jp2",
        'multipart/related; type="image/jp2"; transfer-syntax="1.2.840.10008.1.2.4.90"',
        "multipart/related; type=image/jpeg; q=0.2, multipart/related; type=image/jp2; q=0.9",
    ):
        response = httpx.get(frames_url(wado, name, "2"), headers={"Accept": accept})
        assert response.status_code == 200, (accept, response.text)
        ((headers, payload),) = parse_multipart(response.headers["content-type"], response.content)
        assert payload == expected[1]
        assert headers["content-type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
    bare = httpx.get(frames_url(wado, name, "2"), headers={"Accept": "image/jp2"})
    assert bare.status_code == 200 and bare.content == expected[1]


def test_many_frames_stream(wado: WadoServer) -> None:
    name = "emri_small_RLE.dcm"
    expected = stored_frames(wado.get(name))
    numbers = ",".join(str(i) for i in range(1, len(expected) + 1))
    with httpx.stream("GET", frames_url(wado, name, numbers), headers={"Accept": OHIF_ACCEPT}) as r:
        body = r.read()
        parts = parse_multipart(r.headers["content-type"], body)
    assert [p for _, p in parts] == expected


@pytest.mark.parametrize("frames", ["0", "-1", "1,,2", "abc", "1.5", "1;2", " "])
def test_malformed_frame_lists_are_400(wado: WadoServer, frames: str) -> None:
    response = httpx.get(frames_url(wado, "ct1", frames), headers={"Accept": OHIF_ACCEPT})
    assert response.status_code == 400, (frames, response.text)
    assert "frame" in response.json()["detail"]


def test_frames_beyond_the_instance_are_404(wado: WadoServer) -> None:
    response = httpx.get(
        frames_url(wado, "emri_small_RLE.dcm", "1,11"), headers={"Accept": OHIF_ACCEPT}
    )
    assert response.status_code == 404
    assert "frame 11" in response.json()["detail"]
    assert httpx.get(frames_url(wado, "ct1", "2")).status_code == 404


def test_frame_media_type_we_cannot_make_is_406(wado: WadoServer) -> None:
    for accept in ("text/html", "multipart/related; type=application/dicom", "image/png"):
        response = httpx.get(frames_url(wado, "ct1", "1"), headers={"Accept": accept})
        assert response.status_code == 406, (accept, response.status_code)
    wrong_family = httpx.get(
        frames_url(wado, "ct1", "1"),
        headers={
            "Accept": "multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.5"
        },
    )
    assert wrong_family.status_code == 406
