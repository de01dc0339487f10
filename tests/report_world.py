"""Helpers for the report tests (on a security world per module, tests.world): the calls a
reading physician's client makes."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import httpx
import pydicom

from tests.security_world import World
from tests.wado_data import parse_multipart

DICOM = "application/dicom"


class ReportClient:
    """One user's calls on the reports API of one tenant."""

    def __init__(self, world: World, user: str, tenant: str = "default") -> None:
        self.world = world
        self.api = world.api(tenant)
        self.headers = world.auth(user)

    def reports(self, study: str) -> str:
        return f"{self.api}/studies/{study}/reports"

    def create(self, study: str, body: dict) -> httpx.Response:
        return httpx.post(self.reports(study), json=body, headers=self.headers, timeout=60)

    def get(self, study: str, report_id: int) -> httpx.Response:
        return httpx.get(f"{self.reports(study)}/{report_id}", headers=self.headers, timeout=60)

    def list(self, study: str) -> httpx.Response:
        return httpx.get(self.reports(study), headers=self.headers, timeout=60)

    def edit(self, study: str, report_id: int, version: int | None, body: dict) -> httpx.Response:
        headers = dict(self.headers)
        if version is not None:
            headers["If-Match"] = f'"{version}"'
        return httpx.put(
            f"{self.reports(study)}/{report_id}", json=body, headers=headers, timeout=60
        )

    def sign(self, study: str, report_id: int, version: int | None) -> httpx.Response:
        headers = dict(self.headers)
        if version is not None:
            headers["If-Match"] = f'"{version}"'
        return httpx.post(f"{self.reports(study)}/{report_id}/sign", headers=headers, timeout=60)

    def addendum(self, study: str, report_id: int, version: int, text: str) -> httpx.Response:
        headers = {**self.headers, "If-Match": f'"{version}"'}
        return httpx.post(
            f"{self.reports(study)}/{report_id}/addenda",
            json={"text": text},
            headers=headers,
            timeout=60,
        )


def study_instances(world: World, user: str, study: str) -> dict[str, str]:
    """QIDO-RS: SOP Instance UID -> SOP Class UID of the study's instances `user` sees."""
    response = httpx.get(
        f"{world.url()}/studies/{study}/instances", headers=world.auth(user), timeout=60
    )
    if response.status_code == 204:
        return {}
    assert response.status_code == 200, response.text
    return {i["00080018"]["Value"][0]: i["00080016"]["Value"][0] for i in response.json()}


def retrieve(world: World, user: str, study: str, sop_instance_uid: str) -> pydicom.Dataset:
    """WADO-RS: one instance of the study (its series found by QIDO-RS)."""
    found = httpx.get(
        f"{world.url()}/studies/{study}/instances",
        params={"SOPInstanceUID": sop_instance_uid},
        headers=world.auth(user),
        timeout=60,
    )
    assert found.status_code == 200, found.text
    series = found.json()[0]["0020000E"]["Value"][0]
    response = httpx.get(
        f"{world.url()}/studies/{study}/series/{series}/instances/{sop_instance_uid}",
        headers={**world.auth(user), "Accept": f'multipart/related; type="{DICOM}"'},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    [(_, payload)] = parse_multipart(response.headers["content-type"], response.content)
    return pydicom.dcmread(io.BytesIO(payload))


def dciodvfy_errors(ds: pydicom.Dataset, path: Path) -> list[str]:
    """The error lines dciodvfy (dicom3tools) reports for `ds` (warnings are not errors)."""
    ds.save_as(path, enforce_file_format=True)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
