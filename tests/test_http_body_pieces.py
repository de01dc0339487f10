"""Request bodies reach the application whole and in order however they arrive: one piece,
many small ones between two reads, or pieces split anywhere (tessera/dicomweb/http_protocol.py
keeps uvicorn's received pieces instead of copying them)."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess


def in_pieces(body: bytes, seed: int) -> Iterator[bytes]:
    """The body in pieces of 1 byte to 200 KB, now and then after a pause (so that several
    pieces pile up before the server reads, or it waits on one)."""
    rng = random.Random(seed)
    position = 0
    while position < len(body):
        size = rng.choice((1, 7, 100, 4096, 65_536, 200_000))
        yield body[position : position + size]
        position += size
        if rng.random() < 0.05:
            time.sleep(0.01)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_body_sent_in_uneven_pieces_is_stored_byte_for_byte(
    server: ServerProcess, seed: int
) -> None:
    study = StudySpec()
    series = generate_uid()
    images = [ct_image(study, series, n, rows=256, columns=256, seed=seed) for n in range(1, 5)]
    boundary = multipart_writer.new_boundary()
    body = multipart_writer.body(boundary, images)
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=in_pieces(body, seed),
        headers={"Content-Type": request_content_type(boundary)},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    for image in images:
        uid = pydicom.dcmread(io.BytesIO(image), stop_before_pixels=True).SOPInstanceUID
        stored = httpx.get(
            f"{server.dicomweb}/studies/{study.study_instance_uid}/series/{series}/instances/{uid}",
            headers={"Accept": "application/dicom"},
            timeout=30,
        )
        assert stored.status_code == 200
        assert stored.content == image
