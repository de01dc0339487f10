"""A signed report as an HL7 v2.5.1 ORU^R01 (unsolicited observation result): PID from the
study, one OBR for the report (accession number, signer, FINAL or corrected), one OBX per
value (TX text, NM number with its unit, CWE coded choice) and the Study Instance UID."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tessera.hl7.message import Segment, component, encode, escape
from tessera.storage.report_sr import ContentItem

STUDY_INSTANCE_UID = ("113014", "Study Instance UID", "DCM")


@dataclass(frozen=True)
class ResultHeader:
    sending_facility: str  # the tenant
    receiving_application: str
    receiving_facility: str
    control_id: str
    document_code: dict
    status: str  # FINAL or AMENDED
    signer: str
    signed_at: datetime


def _ts(value: datetime) -> str:
    return value.astimezone().strftime("%Y%m%d%H%M%S%z")


def _code(code: dict) -> str:
    return component(code["value"], code["meaning"], code["scheme"])


def oru_r01(header: ResultHeader, study: dict[str, str], items: list[ContentItem]) -> bytes:
    result_status = "C" if header.status == "AMENDED" else "F"
    patient_name = component(*study.get("PatientName", "").split("^"))
    patient_id = component(study.get("PatientID", ""), "", "", study.get("IssuerOfPatientID", ""))
    study_time = (study.get("StudyDate", "") + study.get("StudyTime", ""))[:14]
    segments = [
        Segment(
            "MSH",
            (
                "|",
                "^~\\&",
                "TESSERA",
                escape(header.sending_facility),
                escape(header.receiving_application),
                escape(header.receiving_facility),
                _ts(header.signed_at),
                "",
                "ORU^R01^ORU_R01",
                escape(header.control_id),
                "P",
                "2.5.1",
                "",
                "",
                "AL",
                "NE",
                "",
                "UNICODE UTF-8",
            ),
        ),
        Segment(
            "PID",
            (
                "1",
                "",
                patient_id,
                "",
                patient_name,
                "",
                study.get("PatientBirthDate", ""),
                escape(study.get("PatientSex", "")),
            ),
        ),
        Segment(
            "OBR",
            (
                "1",
                "",
                escape(study.get("AccessionNumber", "")),
                _code(header.document_code),
                "",
                "",
                study_time,
                *([""] * 14),
                _ts(header.signed_at),  # OBR-22 results report / status change
                "",
                "",
                result_status,  # OBR-25
                *([""] * 6),
                component(header.signer),  # OBR-32 principal result interpreter
            ),
        ),
    ]
    observations = [("ST", component(*STUDY_INSTANCE_UID), escape(study["StudyInstanceUID"]), "")]
    for item in items:
        if item.value_type == "NUM":
            unit = item.unit or {}
            observations.append(
                ("NM", _code(item.concept), item.display().split(" ")[0], _code(unit))
            )
        elif item.value_type == "CODE" and item.code is not None:
            observations.append(("CWE", _code(item.concept), _code(item.code), ""))
        else:
            observations.append(("TX", _code(item.concept), escape(item.text), ""))
    for number, (value_type, identifier, value, units) in enumerate(observations, start=1):
        segments.append(
            Segment(
                "OBX",
                (
                    str(number),
                    value_type,
                    identifier,
                    "",
                    value,
                    units,
                    "",
                    "",
                    "",
                    "",
                    result_status,
                ),
            )
        )
    return encode(segments)
