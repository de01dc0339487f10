"""A small, known set of instances for the QIDO-RS and query-engine tests.

Header-only synthetic instances with fixed UIDs (so tests can name them), plus pydicom's
character-set test files (names in Latin-1, Greek, Cyrillic, Arabic, Hebrew, ISO 2022
Japanese and Korean, UTF-8, GB18030).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.data import get_charset_files

from tessera.synthetic import header_only_instance

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SR = "1.2.840.10008.5.1.4.1.1.88.11"
DX = "1.2.840.10008.5.1.4.1.1.1.1"


@dataclass
class SeriesSpec:
    uid: str
    modality: str
    number: int | None
    instances: int
    sop_class: str = CT
    description: str | None = None
    source: str = "default"
    attributes: dict = field(default_factory=dict)


@dataclass
class StudySpec:
    uid: str
    patient_name: str
    patient_id: str
    date: str | None
    time: str | None
    accession: str
    description: str
    series: list[SeriesSpec]


STUDIES = [
    StudySpec(
        "2.25.101",
        "SMITH^JOHN",
        "PID-A",
        "20170315",
        "101500",
        "ACC-A",
        "CT CHEST",
        [
            SeriesSpec("2.25.1011", "CT", 1, 3, description="AXIAL"),
            SeriesSpec("2.25.1012", "SR", 2, 1, SR, description="REPORT", source="clinicB"),
        ],
    ),
    StudySpec(
        "2.25.102",
        "Smithson^Anna",
        "PID-B",
        "20180101",
        "235959",
        "ACC-B",
        "MR BRAIN",
        [SeriesSpec("2.25.1021", "MR", 1, 2, MR, source="clinicB")],
    ),
    StudySpec(
        "2.25.103",
        "DOE^JANE",
        "PID-C",
        "20200601",
        "080000",
        "ACC_%'1",
        "X-RAY'; DROP TABLE study;--",
        [SeriesSpec("2.25.1031", "DX", None, 1, DX)],
    ),
    StudySpec(
        "2.25.104",
        "O'BRIEN^PAT",
        "PID-D",
        None,
        None,
        "ACC-D",
        "UNDATED",
        [SeriesSpec("2.25.1041", "CT", 3, 1)],
    ),
    StudySpec(
        "2.25.105",
        "100%^PERCENT",
        "PID-E",
        "20190101",
        "120000",
        "ACC-E",
        "PERCENT",
        [SeriesSpec("2.25.1051", "OT", 1, 1)],
    ),
    StudySpec(
        "2.25.106",
        "A_B^C",
        "PID-F",
        "20190102",
        "120000",
        "ACC-F",
        "UNDERSCORE",
        [SeriesSpec("2.25.1061", "OT", 1, 1)],
    ),
    StudySpec(
        "2.25.107",
        "AXB^C",
        "PID-G",
        "20190103",
        "120000",
        "ACC-G",
        "X",
        [SeriesSpec("2.25.1071", "OT", 1, 1)],
    ),
]

SYNTHETIC_UIDS = [s.uid for s in STUDIES]

CHARSET_FILES = [
    "chrArab.dcm",
    "chrFren.dcm",
    "chrGerm.dcm",
    "chrGreek.dcm",
    "chrH31.dcm",
    "chrH32.dcm",
    "chrHbrw.dcm",
    "chrI2.dcm",
    "chrJapMulti.dcm",
    "chrRuss.dcm",
    "chrX1.dcm",
    "chrX2.dcm",
]


def instance_uid(series_uid: str, number: int) -> str:
    return f"{series_uid}.{number}"


def synthetic_instances() -> list[tuple[str, bytes]]:
    """(source name, Part 10 bytes) for every synthetic instance."""
    out = []
    for study in STUDIES:
        for series in study.series:
            for number in range(1, series.instances + 1):
                attributes = {
                    "StudyInstanceUID": study.uid,
                    "SeriesInstanceUID": series.uid,
                    "PatientName": study.patient_name,
                    "PatientID": study.patient_id,
                    "PatientBirthDate": "19600101",
                    "PatientSex": "O",
                    "AccessionNumber": study.accession,
                    "StudyDescription": study.description,
                    "ReferringPhysicianName": "WELBY^MARCUS",
                    "StudyID": "S1",
                    "Modality": series.modality,
                    "InstanceNumber": number,
                    "Rows": 64,
                    "Columns": 32,
                    "BitsAllocated": 16,
                    "ContentDate": study.date or "20000101",
                    "ContentTime": f"1017{number:02d}",
                    "AcquisitionDateTime": f"{study.date or '20000101'}1017{number:02d}",
                    **series.attributes,
                }
                if study.date:
                    attributes["StudyDate"] = study.date
                    attributes["SeriesDate"] = study.date
                if study.time:
                    attributes["StudyTime"] = study.time
                if series.number is not None:
                    attributes["SeriesNumber"] = series.number
                if series.description:
                    attributes["SeriesDescription"] = series.description
                # Fixed SOP Instance UIDs so tests can name them.
                attributes["SOPInstanceUID"] = instance_uid(series.uid, number)
                out.append((series.source, header_only_instance(attributes, series.sop_class)))
    return out


def charset_files() -> list[Path]:
    found = {Path(p).name: Path(p) for p in get_charset_files("*.dcm")}
    return [found[name] for name in CHARSET_FILES]


def total_instances() -> int:
    return sum(s.instances for study in STUDIES for s in study.series) + len(CHARSET_FILES)
