"""Every DICOMweb response carries a media type the request's Accept allows, or is 406
naming what is available: every resource (QIDO-RS, metadata, instances, frames, bulk data,
rendered, thumbnail, the STOW-RS response) against many Accept headers, over HTTP against
the shared WADO server."""

from __future__ import annotations

import httpx
import pytest

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.dicomweb.media_type import parse_media_type, quality, split_media_ranges
from tests.wado_fixtures import WadoServer

ACCEPTS = [
    "image/jpeg",
    'multipart/related; type="image/jpeg"',
    "image/png, image/gif;q=0.5",
    "image/*",
    "application/dicom",
    'multipart/related; type="application/dicom"',
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    "application/dicom+json",
    "application/json",
    'multipart/related; type="application/dicom+json"',
    "application/octet-stream",
    'multipart/related; type="application/octet-stream"',
    'multipart/related; type="image/jls"',
    'multipart/related; type="image/dicom-rle"',
    "text/html",
    "*/*",
    "application/dicom+json;q=0, */*",
]
NOTHING_SERVES = ('multipart/related; type="application/dicom+json"', "text/html")


def allowed(content_type: str, accept: str) -> bool:
    """Does one of Accept's media ranges (q > 0) match the response's Content-Type?"""
    media_type, params = parse_media_type(content_type)
    part = params.get("type", "").lower()
    for item in split_media_ranges(accept):
        wanted, wanted_params = parse_media_type(item)
        if quality(wanted_params) == 0:
            continue
        if wanted == "*/*":
            return True
        if wanted.endswith("/*") and media_type.startswith(wanted[:-1]):
            return True
        if wanted == media_type:
            wanted_part = wanted_params.get("type", "").lower()
            if media_type != "multipart/related" or not wanted_part or wanted_part == part:
                return True
    return False


def resources(wado: WadoServer) -> dict[str, str]:
    study = f"{wado.root}/studies/{wado.study}"
    ct = wado.get("ct1")
    ct_series = f"{study}/series/{ct.series}"
    multi = wado.get("emri_small_RLE.dcm").path(wado.root)
    return {
        "qido studies": f"{wado.root}/studies?PatientID=WADO-1",
        "qido instances": f"{study}/instances",
        "study metadata": f"{study}/metadata",
        "instance metadata": f"{ct.path(wado.root)}/metadata",
        "study": study,
        "series": ct_series,
        "instance": ct.path(wado.root),
        "one frame": f"{multi}/frames/1",
        "two frames": f"{multi}/frames/1,2",
        "native pixel data": f"{ct.path(wado.root)}/bulkdata/7FE00010",
        "RLE pixel data": f"{multi}/bulkdata/7FE00010",
        "study rendered": f"{study}/rendered",
        "series rendered": f"{ct_series}/rendered",
        "instance rendered": f"{multi}/rendered",
        "frame rendered": f"{multi}/frames/1/rendered",
        "frames rendered": f"{multi}/frames/1,2/rendered",
        "study thumbnail": f"{study}/thumbnail",
        "frame thumbnail": f"{multi}/frames/1/thumbnail",
    }


@pytest.mark.parametrize("accept", ACCEPTS)
def test_every_resource_answers_an_accepted_media_type_or_406(
    wado: WadoServer, accept: str
) -> None:
    served = 0
    with httpx.Client(timeout=60) as client:
        for name, url in resources(wado).items():
            response = client.get(url, headers={"Accept": accept})
            if response.status_code == 406:
                assert response.json()["detail"], (name, accept)
                continue
            assert response.status_code == 200, (name, accept, response.text[:300])
            content_type = response.headers["content-type"]
            assert allowed(content_type, accept), (name, accept, content_type)
            served += 1
    # No DICOMweb resource is multipart DICOM JSON or HTML; each other Accept is served.
    assert (served == 0) == (accept in NOTHING_SERVES), served


@pytest.mark.parametrize(
    ("name", "accept", "expected"),
    [
        ("series rendered", "image/jpeg", 406),
        ("study rendered", "image/png", 406),
        ("series rendered", 'multipart/related; type="image/jpeg"', "multipart/related"),
        ("instance rendered", 'multipart/related; type="image/jpeg"', 406),
        ("instance rendered", "image/jpeg", "image/jpeg"),
        ("frames rendered", "image/jpeg", 406),
        ("frames rendered", "image/gif", "image/gif"),  # the frames as one animated GIF
        ("study thumbnail", 'multipart/related; type="image/jpeg"', 406),
        ("study metadata", 'multipart/related; type="application/dicom+json"', 406),
        ("study metadata", "application/json", "application/json"),
        ("qido studies", "application/json", "application/json"),
        ("qido studies", "*/*", "application/dicom+json"),
        ("RLE pixel data", "application/octet-stream", 406),
        ("RLE pixel data", 'multipart/related; type="image/dicom-rle"', "multipart/related"),
        ("native pixel data", "application/octet-stream", "application/octet-stream"),
    ],
)
def test_named_cases(wado: WadoServer, name: str, accept: str, expected: int | str) -> None:
    response = httpx.get(resources(wado)[name], headers={"Accept": accept}, timeout=60)
    if expected == 406:
        assert response.status_code == 406, response.text[:300]
        detail = response.json()["detail"]
        assert (
            "multipart/related" in detail
            or "application/dicom+json" in detail
            or ("image/" in detail)
        ), detail
    else:
        assert response.status_code == 200, response.text[:300]
        assert parse_media_type(response.headers["content-type"])[0] == expected


def test_a_rendered_series_406_names_what_is_available(wado: WadoServer) -> None:
    response = httpx.get(
        resources(wado)["series rendered"], headers={"Accept": "image/jpeg"}, timeout=60
    )
    assert response.status_code == 406
    assert 'multipart/related; type="image/jpeg"' in response.json()["detail"]


def test_ranged_bulk_data_only_as_octet_stream(wado: WadoServer) -> None:
    url = resources(wado)["native pixel data"]
    multipart = 'multipart/related; type="application/octet-stream"'
    response = httpx.get(url, headers={"Accept": multipart, "Range": "bytes=0-9"}, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/related")
    ranged = httpx.get(
        url, headers={"Accept": "application/octet-stream", "Range": "bytes=0-9"}, timeout=60
    )
    assert ranged.status_code == 206 and len(ranged.content) == 10


@pytest.mark.parametrize(
    ("accept", "status", "media_type"),
    [
        ("application/dicom+json", 200, "application/dicom+json"),
        ("application/json", 200, "application/json"),
        ("*/*", 200, "application/dicom+json"),
        ("application/dicom+xml", 406, "application/json"),
        ("text/html", 406, "application/json"),
    ],
)
def test_stow_response_media_type(
    wado: WadoServer, accept: str, status: int, media_type: str
) -> None:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{wado.root}/studies",
        content=multipart_writer.body(boundary, [wado.get("ct1").data]),  # already stored
        headers={"Content-Type": request_content_type(boundary), "Accept": accept},
        timeout=60,
    )
    assert response.status_code == status, response.text
    assert parse_media_type(response.headers["content-type"])[0] == media_type
    if status == 406:
        assert "application/dicom+json" in response.json()["detail"]
