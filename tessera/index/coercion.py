"""Attribute coercion: what a study's instances are sent with after an identity change or
after they were attached to an order (IHE Scheduled Workflow).

A correction, move or merge (tessera.index.identity_changes) gives each touched study a
`study_coercion` row: the patient attributes of the identity it now belongs to, as DICOM
string values by keyword. Attaching a study to an order (tessera.index.order_coercion) writes
the order's patient and accession values into the same row, for the instances of the order's
source (`BY_SOURCE`). Each writer merges its keywords into the row: whichever came last wins
per keyword (`with_study_values`, `with_source_values`; `for_source` is what one instance
is sent with). Everything that sends instances or their
metadata applies them: WADO-RS metadata (`coerce_json`), WADO-RS / WADO-URI instances
(`coerce_part10`), C-MOVE / C-GET and routing (`coerce_dataset`). The stored bytes stay as
received (for audit); QIDO-RS and C-FIND read index columns that the writers set to the same
values (`index_values`).
"""

from __future__ import annotations

from datetime import date
from io import BytesIO
from typing import Any

import orjson
import pydicom
from pydicom.dataset import Dataset

from tessera.index import attributes as a

# keyword -> (tag as in DICOM JSON, VR)
COERCIBLE: dict[str, tuple[str, str]] = {
    "PatientName": ("00100010", "PN"),
    "PatientID": ("00100020", "LO"),
    "IssuerOfPatientID": ("00100021", "LO"),
    "PatientBirthDate": ("00100030", "DA"),
    "PatientSex": ("00100040", "CS"),
    "AccessionNumber": ("00080050", "SH"),
    # The value is the Local Namespace Entity ID of the one item ('' = the sequence empty).
    "IssuerOfAccessionNumberSequence": ("00080051", "SQ"),
}
_LOCAL_NAMESPACE = "00400031"  # Local Namespace Entity ID (UT), in the issuer item

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


def order_coercion(
    accession_number: str,
    issuer_of_accession_number: str,
    patient_id: str,
    issuer_of_patient_id: str,
    patient_name: str | None,
    patient_birth_date: date | None,
    patient_sex: str | None,
) -> Coercion:
    """What an order's images are shown with: its accession number and issuer (a Patient
    ID, name, birth date, sex or issuer the order leaves empty keeps the received value)."""
    out: Coercion = {
        "AccessionNumber": accession_number,
        "IssuerOfAccessionNumberSequence": issuer_of_accession_number,
    }
    patient = patient_coercion(
        patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex
    )
    out.update({keyword: text for keyword, text in patient.items() if text})
    return out


# The stored row (JSON): the study-wide keywords, and under BY_SOURCE the keywords that apply
# to the instances of one source only (an order's values: the order belongs to one source).
StoredCoercion = dict[str, Any]
BY_SOURCE = "by_source"


def with_study_values(stored: StoredCoercion | None, values: Coercion) -> StoredCoercion:
    """The row after a study-wide change (identity): later wins per keyword, also over the
    per-source values of an earlier order attach."""
    out: StoredCoercion = {**(stored or {}), **values}
    by_source = {
        source: kept
        for source, per_source in out.pop(BY_SOURCE, {}).items()
        if (kept := {k: v for k, v in per_source.items() if k not in values})
    }
    if by_source:
        out[BY_SOURCE] = by_source
    return out


def with_source_values(
    stored: StoredCoercion | None, source_pk: int, values: Coercion
) -> StoredCoercion:
    """The row after an order of `source_pk` attached the study: its instances take the
    values (later wins per keyword)."""
    out: StoredCoercion = dict(stored or {})
    by_source = dict(out.get(BY_SOURCE, {}))
    by_source[str(source_pk)] = {**by_source.get(str(source_pk), {}), **values}
    out[BY_SOURCE] = by_source
    return out


def study_wide(stored: StoredCoercion | None) -> Coercion:
    """The keywords that apply to every instance of the study."""
    return {k: v for k, v in (stored or {}).items() if k in COERCIBLE}


def for_source(stored: StoredCoercion | None, source_pk: int) -> Coercion | None:
    """What an instance of `source_pk` is sent with (None: as stored)."""
    if not stored:
        return None
    out = study_wide(stored)
    out.update(stored.get(BY_SOURCE, {}).get(str(source_pk), {}))
    return out or None


def index_values(coercion: Coercion) -> dict[str, Any]:
    """The study (and per-source study) index columns that show the coerced values, so
    QIDO-RS and C-FIND answer what retrieval sends."""
    out: dict[str, Any] = {}
    for keyword, text in coercion.items():
        if keyword == "PatientName":
            out["patient_name"] = text or None
            out["patient_name_norm"] = a.normalize_person_name(text or None)
        elif keyword == "PatientID":
            out["patient_id"] = text
        elif keyword == "IssuerOfPatientID":
            out["issuer_of_patient_id"] = text
        elif keyword == "PatientBirthDate":
            out["patient_birth_date"] = _date(text)
        elif keyword == "PatientSex":
            out["patient_sex"] = text or None
        elif keyword == "AccessionNumber":
            out["accession_number"] = text or None
    return out


def _date(text: str) -> date | None:
    if len(text) != 8 or not text.isdigit():
        return None
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def parse(raw: bytes | None) -> StoredCoercion | None:
    return None if raw is None else orjson.loads(raw)


def _json_element(keyword: str, text: str) -> dict[str, Any]:
    _, vr = COERCIBLE[keyword]
    if vr == "SQ" and text:
        return {"vr": vr, "Value": [{_LOCAL_NAMESPACE: {"vr": "UT", "Value": [text]}}]}
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
        if COERCIBLE[keyword][1] == "SQ":
            item = Dataset()
            if text:
                item.LocalNamespaceEntityID = text
            setattr(ds, keyword, [item] if text else [])
        else:
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
