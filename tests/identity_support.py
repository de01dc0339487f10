"""Instances and uploads for the identity tests: patients of several sites, each with its
own local Patient ID, sent over real STOW-RS with a source label."""

from __future__ import annotations

import httpx
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.synthetic import header_only_instance
from tests.conftest import ServerProcess


def instance(
    patient_id: str,
    *,
    issuer: str | None = None,
    name: str = "DOE^JANE",
    birth_date: str = "20190304",
    sex: str = "F",
    study_uid: str | None = None,
    study_date: str = "20260101",
    others: tuple[tuple[str, str | None], ...] = (),
) -> bytes:
    """One header-only CT instance of a new series (of `study_uid`, else a new study)."""
    attributes: dict[str, object] = {
        "PatientID": patient_id,
        "PatientName": name,
        "PatientBirthDate": birth_date,
        "PatientSex": sex,
        "StudyInstanceUID": study_uid or generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "StudyDate": study_date,
        "Modality": "CT",
    }
    if issuer is not None:
        attributes["IssuerOfPatientID"] = issuer
    if others:
        items = []
        for other_id, other_issuer in others:
            item = Dataset()
            item.PatientID = other_id
            if other_issuer is not None:
                item.IssuerOfPatientID = other_issuer
            item.TypeOfPatientID = "TEXT"
            items.append(item)
        attributes["OtherPatientIDsSequence"] = items
    return header_only_instance(attributes)


def stow(
    server: ServerProcess,
    parts: list[bytes],
    source: str | None = None,
    headers: dict[str, str] | None = None,
    root: str | None = None,
) -> httpx.Response:
    boundary = multipart_writer.new_boundary()
    url = f"{root or server.dicomweb}/studies" + (f"?source={source}" if source else "")
    return httpx.post(
        url,
        content=multipart_writer.body(boundary, parts),
        headers={
            "Content-Type": request_content_type(boundary),
            "Accept": "application/dicom+json",
            **(headers or {}),
        },
        timeout=120,
    )


def qido(server: ServerProcess, path: str, headers: dict[str, str] | None = None) -> list[dict]:
    response = httpx.get(f"{server.dicomweb}{path}", headers=headers or {}, timeout=60)
    assert response.status_code in (200, 204), response.text
    return response.json() if response.status_code == 200 else []


def value(item: dict, tag: str) -> object:
    return item.get(tag, {}).get("Value", [None])[0]
