"""Server-side transcoding over HTTP: frames and instances in another transfer syntax decode
to the same pixels as pydicom's decoding of the stored object (files made by others)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.pixels import unpack_bits

from tests.wado_data import StoredObject, parse_multipart
from tests.wado_fixtures import WadoServer

pytest.importorskip("tessera.storage.transcode")


ELE = "1.2.840.10008.1.2.1"
UNCOMPRESSED = f"multipart/related; type=application/octet-stream; transfer-syntax={ELE}"


def original_frames(stored: StoredObject) -> np.ndarray:
    """pydicom's decoding, shaped (frames, rows, columns[, samples])."""
    dataset = pydicom.dcmread(io.BytesIO(stored.data))
    pixels = dataset.pixel_array
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    return pixels if count > 1 else pixels[np.newaxis]


@pytest.mark.parametrize(
    "name",
    [
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_RLE.dcm",
        "mr_rle",
        "JPEG-LL.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
    ],
)
def test_frames_decoded_to_uncompressed(wado: WadoServer, name: str) -> None:
    stored = wado.get(name)
    expected = original_frames(stored)
    numbers = ",".join(str(i) for i in range(1, len(expected) + 1))
    response = httpx.get(
        f"{stored.path(wado.root)}/frames/{numbers}", headers={"Accept": UNCOMPRESSED}
    )
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert len(parts) == len(expected)
    for (headers, payload), frame in zip(parts, expected, strict=True):
        assert headers["content-type"] == f"application/octet-stream; transfer-syntax={ELE}"
        got = np.frombuffer(payload, dtype=frame.dtype.newbyteorder("<")).reshape(frame.shape)
        assert np.array_equal(got, frame), name


def test_bit_packed_frames(wado: WadoServer) -> None:
    stored = wado.get("liver.dcm")
    expected = original_frames(stored)
    response = httpx.get(f"{stored.path(wado.root)}/frames/2", headers={"Accept": UNCOMPRESSED})
    assert response.status_code == 200, response.text
    ((_, payload),) = parse_multipart(response.headers["content-type"], response.content)
    rows, columns = expected.shape[1:]
    got = unpack_bits(payload)[: rows * columns].reshape(rows, columns)
    assert np.array_equal(got, expected[1])


def test_native_frame_encoded_as_jpeg_2000(wado: WadoServer) -> None:
    from openjpeg import decode

    stored = wado.get("ct1")
    expected = original_frames(stored)[0]
    response = httpx.get(
        f"{stored.path(wado.root)}/frames/1",
        headers={"Accept": "multipart/related; type=image/jp2"},
    )
    assert response.status_code == 200, response.text
    ((headers, payload),) = parse_multipart(response.headers["content-type"], response.content)
    assert headers["content-type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
    assert np.array_equal(decode(payload), expected)


def test_instance_default_is_explicit_little_endian(wado: WadoServer) -> None:
    stored = wado.get("emri_small_RLE.dcm")
    response = httpx.get(stored.path(wado.root), headers={"Accept": "application/dicom"})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={ELE}"
    received = pydicom.dcmread(io.BytesIO(response.content))
    assert received.file_meta.TransferSyntaxUID == ELE
    assert received.SOPInstanceUID == stored.sop
    assert np.array_equal(received.pixel_array, original_frames(stored))


def test_lossy_instance_default_stays_as_stored(wado: WadoServer) -> None:
    stored = wado.get("SC_rgb_jpeg_dcmtk.dcm")
    response = httpx.get(stored.path(wado.root), headers={"Accept": "application/dicom"})
    assert response.content == stored.data


def test_lossy_instance_decoded_on_request_is_marked_lossy(wado: WadoServer) -> None:
    stored = wado.get("SC_rgb_jpeg_dcmtk.dcm")
    response = httpx.get(
        stored.path(wado.root), headers={"Accept": f"application/dicom; transfer-syntax={ELE}"}
    )
    assert response.status_code == 200
    received = pydicom.dcmread(io.BytesIO(response.content))
    assert received.file_meta.TransferSyntaxUID == ELE
    assert received.LossyImageCompression == "01"


def test_instance_named_syntax(wado: WadoServer) -> None:
    stored = wado.get("ct1")
    j2k = "1.2.840.10008.1.2.4.90"
    response = httpx.get(
        stored.path(wado.root),
        headers={"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={j2k}'},
    )
    assert response.status_code == 200
    ((headers, payload),) = parse_multipart(response.headers["content-type"], response.content)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={j2k}"
    received = pydicom.dcmread(io.BytesIO(payload))
    assert received.file_meta.TransferSyntaxUID == j2k
    assert np.array_equal(received.pixel_array, original_frames(stored)[0])


def test_syntax_nobody_can_make_is_406(wado: WadoServer) -> None:
    stored = wado.get("ct1")
    mpeg = "1.2.840.10008.1.2.4.100"
    response = httpx.get(
        stored.path(wado.root),
        headers={"Accept": f"multipart/related; type=application/dicom; transfer-syntax={mpeg}"},
    )
    assert response.status_code == 406


@pytest.mark.parametrize(
    "media_type, syntax",
    [
        ("image/jp2", "1.2.840.10008.1.2.4.90"),
        ("image/jphc", "1.2.840.10008.1.2.4.201"),
        ("image/jls", "1.2.840.10008.1.2.4.80"),
        ("image/dicom-rle", "1.2.840.10008.1.2.5"),
    ],
)
def test_native_frame_encoded_losslessly(wado: WadoServer, media_type: str, syntax: str) -> None:
    """Encoded on the server, decoded here by pydicom's own decoders: same pixels."""
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    stored = wado.get("ct1")
    expected = original_frames(stored)[0]
    accept = f"multipart/related; type={media_type}; transfer-syntax={syntax}"
    response = httpx.get(f"{stored.path(wado.root)}/frames/1", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    ((headers, payload),) = parse_multipart(response.headers["content-type"], response.content)
    assert headers["content-type"] == f"{media_type}; transfer-syntax={syntax}"
    ds = stored.dataset
    decoded, _ = get_decoder(syntax).as_array(
        encapsulate([payload]),
        rows=ds.Rows,
        columns=ds.Columns,
        samples_per_pixel=1,
        bits_allocated=ds.BitsAllocated,
        bits_stored=ds.BitsStored,
        pixel_representation=ds.PixelRepresentation,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
    )
    assert np.array_equal(decoded, expected)
