"""Attribute coercion: what a study's instances are sent with after an identity change.

A correction, move or merge (tessera.index.identity_changes) gives each touched study a
`study_coercion` row: the patient attributes of the identity it now belongs to, as DICOM
string values by keyword. Everything that sends instances or their metadata applies them:
WADO-RS metadata (`coerce_json`), WADO-RS / WADO-URI instances (`coerce_part10`), C-MOVE /
C-GET (`coerce_dataset`). The stored bytes stay as received (for audit); QIDO-RS and C-FIND
read the corrected index columns. Other workflows that must change what viewers see (e.g.
orders' accession values) can add keywords here and write the same row.
"""

from __future__ import annotations

from datetime import date
from io import BytesIO
from typing import Any

import orjson
import pydicom
from pydicom.dataset import Dataset

# keyword -> (tag as in DICOM JSON, VR)
COERCIBLE: dict[str, tuple[str, str]] = {
    "PatientName": ("00100010", "PN"),
    "PatientID": ("00100020", "LO"),
    "IssuerOfPatientID": ("00100021", "LO"),
    "PatientBirthDate": ("00100030", "DA"),
    "PatientSex": ("00100040", "CS"),
}

Coercion = dict[str, str]


def patient_coercion(
    patient_id: str,
    issuer_of_patient_id: str,
    patient_name: str | None,
    patient_birth_date: date | None,
    patient_sex: str | None,
) -> Coercion:
    """The attributes of an identity, as a study of it is sent ('' = present, empty)."""
    return {
        "PatientName": patient_name or "",
        "PatientID": patient_id,
        "IssuerOfPatientID": issuer_of_patient_id,
        "PatientBirthDate": patient_birth_date.strftime("%Y%m%d") if patient_birth_date else "",
        "PatientSex": patient_sex or "",
    }


def parse(raw: bytes | None) -> Coercion | None:
    return None if raw is None else orjson.loads(raw)


def _json_element(keyword: str, text: str) -> dict[str, Any]:
    _, vr = COERCIBLE[keyword]
    if not text:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": text}]}
    return {"vr": vr, "Value": [text]}


def coerce_json(dicom_json: bytes, coercion: Coercion | None) -> bytes:
    """One instance's DICOM JSON with the coerced attributes (tags kept in order)."""
    if not coercion:
        return dicom_json
    item = orjson.loads(dicom_json)
    for keyword, text in coercion.items():
        if keyword in COERCIBLE:
            item[COERCIBLE[keyword][0]] = _json_element(keyword, text)
    return orjson.dumps(dict(sorted(item.items())))


def coerce_dataset(ds: Dataset, coercion: Coercion | None) -> Dataset:
    """The dataset with the coerced attributes (in place; returned for chaining). A value
    that is not plain ASCII switches the dataset to UTF-8 (its text decoded first)."""
    if not coercion:
        return ds
    values = {k: v for k, v in coercion.items() if k in COERCIBLE}
    if not all(v.isascii() for v in values.values()):
        ds.decode()
        ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, text in values.items():
        setattr(ds, keyword, text)
    return ds


def coerce_part10(data: bytes, coercion: Coercion | None) -> bytes:
    """A Part 10 file with the coerced attributes, in its own transfer syntax."""
    if not coercion:
        return data
    ds = pydicom.dcmread(BytesIO(data))
    coerce_dataset(ds, coercion)
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def coercion_tag(coercion: Coercion | None) -> str:
    """A string naming the coercion, for entity tags (a change gives a new ETag)."""
    return "" if not coercion else orjson.dumps(coercion, option=orjson.OPT_SORT_KEYS).decode()
