"""Helpers for the change feed, webhook and routing tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess


def ct_study(count: int, study: StudySpec | None = None, size: int = 16) -> list[bytes]:
    spec = study or StudySpec()
    series = generate_uid()
    return [ct_image(spec, series, number, size, size) for number in range(1, count + 1)]


def stow_parts(
    dicomweb: str, parts: list[bytes], headers: dict | None = None, source: str | None = None
) -> httpx.Response:
    boundary = multipart_writer.new_boundary()
    response = httpx.post(
        f"{dicomweb}/studies",
        params={"source": source} if source else None,
        content=multipart_writer.body(boundary, parts),
        headers={
            **(headers or {}),
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response


def read_feed(
    server: ServerProcess,
    after: int = 0,
    headers: dict | None = None,
    api: str | None = None,
    **params,
) -> dict:  # type: ignore[no-untyped-def]
    response = httpx.get(
        f"{api or server.base_url + '/api/v1'}/changes",
        params={"after": after, **params},
        headers=headers,
        timeout=90,
    )
    assert response.status_code == 200, response.text
    return response.json()


def read_whole_feed(
    server: ServerProcess, headers: dict | None = None, api: str | None = None
) -> list[dict]:
    found: list[dict] = []
    after = 0
    while True:
        page = read_feed(server, after, headers, api, limit=1000)
        if not page["changes"]:
            return found
        found += page["changes"]
        after = page["next"]


START_TIMEOUT = 180  # the test machines are shared and often loaded


def tessera_cli(server: ServerProcess, *args: str) -> object:
    """Run the real `tessera` command line against the server's index; its JSON output."""
    env = dict(os.environ)
    env.update(TESSERA_DATABASE_URL=server.database_url, TESSERA_DATA_DIR=str(server.data_dir))
    out = subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)
