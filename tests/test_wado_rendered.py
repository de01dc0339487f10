"""Rendered images and thumbnails (WADO-RS) and WADO-URI images over HTTP: valid JPEG /
PNG / GIF, sizes, windows, parameters, errors."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.wado_data import parse_multipart
from tests.wado_fixtures import WadoServer

pytest.importorskip("tessera.storage.render")


def image_of(response: httpx.Response, kind: str) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"image/{kind}"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert image.format == kind.upper()
    return image


@pytest.mark.parametrize(
    "name", ["ct1", "mr_rle", "cine", "SC_rgb_jpeg_dcmtk.dcm", "emri_small_jpeg_2k_lossless.dcm"]
)
def test_instance_rendered_jpeg(wado: WadoServer, name: str) -> None:
    stored = wado.get(name)
    image = image_of(httpx.get(f"{stored.path(wado.root)}/rendered"), "jpeg")
    assert image.size == (stored.dataset.Columns, stored.dataset.Rows)


def test_accept_query_parameter_beats_browser_accept(wado: WadoServer) -> None:
    url = f"{wado.get('ct1').path(wado.root)}/rendered"
    image_of(httpx.get(url, params={"accept": "image/png"}, headers={"Accept": "*/*"}), "png")
    image_of(httpx.get(url, headers={"Accept": "image/png"}), "png")


def test_viewport_window_quality(wado: WadoServer) -> None:
    url = f"{wado.get('ct1').path(wado.root)}/rendered"
    assert image_of(httpx.get(url, params={"viewport": "32,32"}), "jpeg").size == (32, 32)
    default = httpx.get(url, params={"accept": "image/png"}).content
    windowed = httpx.get(url, params={"accept": "image/png", "window": "1000,200"}).content
    assert default != windowed
    small = httpx.get(url, params={"quality": "5"}).content
    large = httpx.get(url, params={"quality": "95"}).content
    assert len(small) < len(large)


def test_frame_level_and_cine(wado: WadoServer) -> None:
    stored = wado.get("emri_small_jpeg_2k_lossless.dcm")
    image_of(httpx.get(f"{stored.path(wado.root)}/frames/3/rendered"), "jpeg")
    several = httpx.get(f"{stored.path(wado.root)}/frames/1,2/rendered")
    assert len(parse_multipart(several.headers["content-type"], several.content)) == 2
    gif = image_of(
        httpx.get(f"{stored.path(wado.root)}/rendered", params={"accept": "image/gif"}), "gif"
    )
    assert gif.n_frames == 10
    assert httpx.get(f"{stored.path(wado.root)}/frames/11/rendered").status_code == 404


def test_study_and_series_levels(wado: WadoServer) -> None:
    ct = wado.get("ct1")
    series = httpx.get(f"{wado.root}/studies/{ct.study}/series/{ct.series}/rendered")
    parts = parse_multipart(series.headers["content-type"], series.content)
    assert len(parts) == 2 and all(p.startswith(b"\xff\xd8") for _, p in parts)
    thumb = image_of(httpx.get(f"{wado.root}/studies/{ct.study}/thumbnail"), "jpeg")
    assert max(thumb.size) <= 128
    series_thumb = image_of(
        httpx.get(f"{wado.root}/studies/{ct.study}/series/{ct.series}/thumbnail"), "jpeg"
    )
    assert max(series_thumb.size) <= 128
    instance_thumb = httpx.get(f"{ct.path(wado.root)}/thumbnail", params={"viewport": "16,16"})
    assert image_of(instance_thumb, "jpeg").size == (16, 16)


@pytest.mark.parametrize(
    "params, status",
    [
        ({"window": "1"}, 400),
        ({"window": "40,0"}, 400),
        ({"window": "40,400,cubic"}, 400),
        ({"window": "a,b"}, 400),
        ({"viewport": "a,b"}, 400),
        ({"viewport": "10,10,0,0,5,5"}, 400),
        ({"quality": "0"}, 400),
        ({"quality": "101"}, 400),
        ({"accept": "text/html"}, 406),
    ],
)
def test_bad_rendering_parameters(wado: WadoServer, params: dict[str, str], status: int) -> None:
    response = httpx.get(f"{wado.get('ct1').path(wado.root)}/rendered", params=params)
    assert response.status_code == status, (params, response.text)


def test_rendered_304(wado: WadoServer) -> None:
    url = f"{wado.get('ct1').path(wado.root)}/rendered"
    first = httpx.get(url)
    assert httpx.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304


def test_wado_uri_images(wado: WadoServer) -> None:
    stored = wado.get("emri_small_RLE.dcm")
    params = {
        "requestType": "WADO",
        "studyUID": stored.study,
        "seriesUID": stored.series,
        "objectUID": stored.sop,
    }
    image_of(httpx.get(f"{wado.root}/wado", params=params), "jpeg")  # the default content type
    png = httpx.get(
        f"{wado.root}/wado",
        params={
            **params,
            "contentType": "image/png",
            "frameNumber": "4",
            "rows": "32",
            "columns": "32",
        },
    )
    assert image_of(png, "png").size == (32, 32)
    windowed = httpx.get(
        f"{wado.root}/wado", params={**params, "windowCenter": "100", "windowWidth": "50"}
    )
    image_of(windowed, "jpeg")
