"""WADO-RS instances, metadata and bulk data over HTTP on a real server (SQLite and
PostgreSQL): byte-identical retrieval, metadata equal to what was stored, every
BulkDataURI resolving, Range requests."""

from __future__ import annotations

import io

import httpx
import orjson
import pydicom
import pytest

from tests.wado_data import parse_multipart
from tests.wado_fixtures import WadoServer

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def test_study_as_stored_is_byte_identical(wado: WadoServer) -> None:
    response = httpx.get(f"{wado.root}/studies/{wado.study}", headers={"Accept": AS_STORED})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/dicom"'
    )
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert sorted(p for _, p in parts) == sorted(o.data for o in wado.objects)
    by_data = {o.data: o for o in wado.objects}
    for headers, payload in parts:
        assert headers["content-type"] == (
            f"application/dicom; transfer-syntax={by_data[payload].transfer_syntax}"
        )


def test_series_and_instance_levels(wado: WadoServer) -> None:
    ct = wado.get("ct1")
    series = httpx.get(
        f"{wado.root}/studies/{ct.study}/series/{ct.series}", headers={"Accept": AS_STORED}
    )
    parts = parse_multipart(series.headers["content-type"], series.content)
    assert [p for _, p in parts] == [ct.data, wado.get("ct2").data]  # InstanceNumber order
    single = httpx.get(ct.path(wado.root), headers={"Accept": "application/dicom"})
    assert single.status_code == 200
    assert single.content == ct.data
    assert (
        single.headers["content-type"] == f"application/dicom; transfer-syntax={ct.transfer_syntax}"
    )


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=application/dicom",  # unquoted, default syntax (native: as is)
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1',
        "*/*",
        "",
        "text/html, multipart/related; type=application/dicom; q=0.5",
    ],
)
def test_native_instance_default_syntax(wado: WadoServer, accept: str) -> None:
    ct = wado.get("ct1")
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(ct.path(wado.root), headers=headers)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert [p for _, p in parts] == [ct.data]


def test_metadata_equals_stored(wado: WadoServer) -> None:
    response = httpx.get(f"{wado.root}/studies/{wado.study}/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    items = response.json()
    assert len(items) == len(wado.objects)
    by_uid = {item["00080018"]["Value"][0]: item for item in items}
    for stored in wado.objects:
        item = by_uid[stored.sop]
        assert item["0020000D"]["Value"] == [stored.study]
        assert item["0020000E"]["Value"] == [stored.series]
        expected = stored.dataset.to_json_dict(bulk_data_threshold=1 << 40)
        for tag in ("00100010", "00100020", "00280010", "00280011", "00280100", "00080016"):
            if tag in expected:
                assert item[tag] == expected[tag], (stored.name, tag)


def test_series_and_instance_metadata(wado: WadoServer) -> None:
    ct = wado.get("ct1")
    series = httpx.get(f"{wado.root}/studies/{ct.study}/series/{ct.series}/metadata").json()
    assert [i["00080018"]["Value"][0] for i in series] == [ct.sop, wado.get("ct2").sop]
    one = httpx.get(f"{ct.path(wado.root)}/metadata").json()
    assert len(one) == 1 and one[0]["00080018"]["Value"] == [ct.sop]


def _bulk_uris(value: object) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "BulkDataURI":
                found.append(inner)
            else:
                found.extend(_bulk_uris(inner))
    elif isinstance(value, list):
        for inner in value:
            found.extend(_bulk_uris(inner))
    return found


def test_every_bulk_data_uri_resolves(wado: WadoServer) -> None:
    items = httpx.get(f"{wado.root}/studies/{wado.study}/metadata").json()
    uris = _bulk_uris(items)
    assert len(uris) >= len(wado.objects)  # at least every Pixel Data
    with httpx.Client(timeout=30) as client:
        for uri in uris:
            assert uri.startswith(wado.root + "/studies/"), uri
            response = client.get(uri)
            assert response.status_code == 200, (uri, response.text)
            assert response.headers["content-type"].startswith("multipart/related")


def test_bulk_data_values_and_ranges(wado: WadoServer) -> None:
    ct = wado.get("ct1")
    pixels = pydicom.dcmread(io.BytesIO(ct.data)).PixelData
    uri = f"{ct.path(wado.root)}/bulkdata/7FE00010"
    whole = httpx.get(uri, headers={"Accept": "application/octet-stream"})
    assert whole.status_code == 200 and whole.content == pixels
    assert whole.headers["accept-ranges"] == "bytes"
    multipart = httpx.get(uri)
    assert [
        p for _, p in parse_multipart(multipart.headers["content-type"], multipart.content)
    ] == [pixels]
    part = httpx.get(uri, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == pixels[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(pixels)}"
    suffix = httpx.get(uri, headers={"Range": "bytes=-5"})
    assert suffix.status_code == 206 and suffix.content == pixels[-5:]
    open_ended = httpx.get(uri, headers={"Range": f"bytes={len(pixels) - 3}-"})
    assert open_ended.content == pixels[-3:]
    beyond = httpx.get(uri, headers={"Range": f"bytes={len(pixels)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(pixels)}"


def test_overlay_bulk_data(wado: WadoServer) -> None:
    siemens = wado.get("MR-SIEMENS-DICOM-WithOverlays.dcm")
    full = pydicom.dcmread(io.BytesIO(siemens.data))
    item = httpx.get(f"{siemens.path(wado.root)}/metadata").json()[0]
    assert item["60003000"]["BulkDataURI"].endswith("/bulkdata/60003000")
    response = httpx.get(
        item["60003000"]["BulkDataURI"], headers={"Accept": "application/octet-stream"}
    )
    assert response.content == full[0x60003000].value
    ranged = httpx.get(item["60003000"]["BulkDataURI"], headers={"Range": "bytes=100-199"})
    assert ranged.content == full[0x60003000].value[100:200]


def test_encapsulated_pixel_data_bulk_is_frames(wado: WadoServer) -> None:
    j2k = wado.get("emri_small_jpeg_2k_lossless.dcm")
    frames = list(
        pydicom.encaps.generate_frames(
            pydicom.dcmread(io.BytesIO(j2k.data)).PixelData, number_of_frames=10
        )
    )
    response = httpx.get(f"{j2k.path(wado.root)}/bulkdata/7FE00010")
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert [p for _, p in parts] == frames
    assert parts[0][0]["content-type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"


def test_proxy_headers_in_bulk_data_uris(wado: WadoServer) -> None:
    ct = wado.get("ct1")
    response = httpx.get(
        f"{ct.path(wado.root)}/metadata",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "pacs.example.org",
            "X-Forwarded-Prefix": "/archive",
        },
    )
    uri = response.json()[0]["7FE00010"]["BulkDataURI"]
    assert uri == (
        f"https://pacs.example.org/archive/dicomweb/studies/{ct.study}/series/{ct.series}"
        f"/instances/{ct.sop}/bulkdata/7FE00010"
    )
    # Plain request: the URI points at the host the client used.
    plain = httpx.get(f"{ct.path(wado.root)}/metadata").json()[0]["7FE00010"]["BulkDataURI"]
    assert plain.startswith(wado.root + "/")
    assert orjson.loads(response.content)  # still valid JSON after rewriting
