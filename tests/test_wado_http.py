"""WADO-RS HTTP behaviour on a real server: CORS preflights, ETag / Last-Modified and 304,
404 for unknown UIDs, 400 for malformed ones and malformed Accept headers, 406."""

from __future__ import annotations

import httpx
import pytest

from tests.wado_fixtures import VIEWER_ORIGIN, WadoServer

OHIF_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def test_cors_preflight_and_simple_request(wado: WadoServer) -> None:
    url = f"{wado.get('ct1').path(wado.root)}/frames/1"
    preflight = httpx.options(
        url,
        headers={
            "Origin": VIEWER_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept, authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == VIEWER_ORIGIN
    assert int(preflight.headers["access-control-max-age"]) >= 600
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    response = httpx.get(url, headers={"Origin": VIEWER_ORIGIN, "Accept": OHIF_ACCEPT})
    assert response.headers["access-control-allow-origin"] == VIEWER_ORIGIN
    assert "ETag" in response.headers["access-control-expose-headers"]
    other = httpx.get(url, headers={"Origin": "http://evil.example", "Accept": OHIF_ACCEPT})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("suffix", ["", "/metadata", "/frames/1", "/bulkdata/7FE00010"])
def test_etag_and_304(wado: WadoServer, suffix: str) -> None:
    url = wado.get("ct1").path(wado.root) + suffix
    first = httpx.get(url)
    assert first.status_code == 200
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert first.headers["cache-control"].startswith("private")
    again = httpx.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert httpx.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert (
        httpx.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code
        == 200
    )


def test_study_level_etag_changes_with_representation(wado: WadoServer) -> None:
    url = f"{wado.root}/studies/{wado.study}/series/{wado.get('ct1').series}/metadata"
    plain = httpx.get(url).headers["etag"]
    proxied = httpx.get(url, headers={"X-Forwarded-Host": "elsewhere.example"}).headers["etag"]
    assert plain != proxied  # the BulkDataURIs differ, so must the validator


UNKNOWN = "1.2.3.4.5.6.7.8.9"


@pytest.mark.parametrize(
    "path",
    [
        f"/studies/{UNKNOWN}",
        f"/studies/{UNKNOWN}/metadata",
        f"/studies/{UNKNOWN}/series/{UNKNOWN}",
        f"/studies/{UNKNOWN}/series/{UNKNOWN}/metadata",
        f"/studies/{UNKNOWN}/series/{UNKNOWN}/instances/{UNKNOWN}",
        f"/studies/{UNKNOWN}/series/{UNKNOWN}/instances/{UNKNOWN}/metadata",
        f"/studies/{UNKNOWN}/series/{UNKNOWN}/instances/{UNKNOWN}/frames/1",
        f"/studies/{UNKNOWN}/series/{UNKNOWN}/instances/{UNKNOWN}/bulkdata/7FE00010",
    ],
)
def test_unknown_uids_are_404(wado: WadoServer, path: str) -> None:
    response = httpx.get(wado.root + path)
    assert response.status_code == 404
    assert response.json()["detail"]


def test_mismatched_levels_are_404(wado: WadoServer) -> None:
    ct, mr = wado.get("ct1"), wado.get("mr_rle")
    # A real instance under the wrong series is not found.
    url = f"{wado.root}/studies/{ct.study}/series/{mr.series}/instances/{ct.sop}"
    assert httpx.get(url).status_code == 404
    assert httpx.get(url + "/frames/1").status_code == 404


@pytest.mark.parametrize("bad", ["abc", "1.2.x", "1" * 65])
def test_malformed_uids_are_400(wado: WadoServer, bad: str) -> None:
    response = httpx.get(f"{wado.root}/studies/{bad}/metadata")
    assert response.status_code == 400
    assert "StudyInstanceUID" in response.json()["detail"]


def test_malformed_accept_is_400(wado: WadoServer) -> None:
    url = f"{wado.get('ct1').path(wado.root)}/frames/1"
    for accept in ("multipart/related; type=application/octet-stream; q=abc", "nonsense"):
        assert httpx.get(url, headers={"Accept": accept}).status_code == 400, accept


def test_unsupported_accept_is_406(wado: WadoServer) -> None:
    ct = wado.get("ct1")
    assert httpx.get(ct.path(wado.root), headers={"Accept": "image/png"}).status_code == 406
    assert (
        httpx.get(
            f"{ct.path(wado.root)}/metadata", headers={"Accept": "application/dicom+xml"}
        ).status_code
        == 406
    )
    assert (
        httpx.get(
            f"{wado.root}/studies/{ct.study}", headers={"Accept": "application/dicom"}
        ).status_code
        == 406
    )


def test_bad_bulk_data_tags(wado: WadoServer) -> None:
    base = wado.get("ct1").path(wado.root)
    assert httpx.get(f"{base}/bulkdata/xyz").status_code == 400
    assert httpx.get(f"{base}/bulkdata/00091234").status_code == 404
    assert httpx.get(f"{base}/bulkdata/00100010").status_code == 404  # not binary


def test_server_keeps_serving(wado: WadoServer) -> None:
    assert wado.server.alive()
    assert "Traceback" not in wado.server.log()
