"""WADO-URI (PS3.18 §9) over HTTP: application/dicom as stored and its errors; rendered
content types are checked with the renderer in test_wado_rendered.py."""

from __future__ import annotations

import httpx
import pytest

from tests.wado_fixtures import WadoServer


def uri_params(wado: WadoServer, name: str, **extra: str) -> dict[str, str]:
    stored = wado.get(name)
    return {
        "requestType": "WADO",
        "studyUID": stored.study,
        "seriesUID": stored.series,
        "objectUID": stored.sop,
        **extra,
    }


def test_dicom_as_stored(wado: WadoServer) -> None:
    for name in ("ct1", "emri_small_jpeg_2k_lossless.dcm"):
        params = uri_params(wado, name, contentType="application/dicom", transferSyntax="*")
        response = httpx.get(f"{wado.root}/wado", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/dicom"
        assert response.content == wado.get(name).data


def test_dicom_default_syntax_native(wado: WadoServer) -> None:
    params = uri_params(wado, "ct1", contentType="application/dicom")
    response = httpx.get(f"{wado.root}/wado", params=params)
    assert response.content == wado.get("ct1").data  # already Explicit VR Little Endian


def test_at_the_dicomweb_root(wado: WadoServer) -> None:
    params = uri_params(wado, "ct1", contentType="application/dicom")
    response = httpx.get(wado.root, params=params, follow_redirects=True)
    assert response.status_code == 200
    assert response.content == wado.get("ct1").data


@pytest.mark.parametrize(
    "change, status",
    [
        ({"requestType": "WADO-RS"}, 400),
        ({"studyUID": "abc"}, 400),
        ({"objectUID": ""}, 400),
        ({"objectUID": "1.2.3.4.5"}, 404),
        ({"contentType": "text/html"}, 406),
        ({"contentType": "application/dicom", "frameNumber": "1"}, 400),
        ({"contentType": "application/dicom", "transferSyntax": "x.y"}, 400),
        ({"anonymize": "yes"}, 400),
        ({"frameNumber": "0"}, 400),
        ({"frameNumber": "2"}, 404),
        ({"windowCenter": "40"}, 400),
        ({"windowCenter": "a", "windowWidth": "400"}, 400),
        ({"imageQuality": "101"}, 400),
        ({"contentType": "image/jpeg", "transferSyntax": "1.2.840.10008.1.2.1"}, 400),
    ],
)
def test_bad_requests(wado: WadoServer, change: dict[str, str], status: int) -> None:
    params = uri_params(wado, "ct1")
    params.update(change)
    response = httpx.get(f"{wado.root}/wado", params=params)
    assert response.status_code == status, (change, response.text)
    assert response.json()["detail"]


def test_scope_hides_unknown_series(wado: WadoServer) -> None:
    params = uri_params(wado, "ct1", contentType="application/dicom")
    params["seriesUID"] = wado.get("mr_rle").series  # real series, wrong one for the object
    assert httpx.get(f"{wado.root}/wado", params=params).status_code == 404
