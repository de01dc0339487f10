"""A signed report rendered as PDF (fpdf2) and wrapped as Encapsulated PDF Storage
(PS3.3 A.45.1), for viewers that show documents and for thumbnails."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from pydicom.dataset import Dataset
from pydicom.uid import EncapsulatedPDFStorage

from tessera.storage.report_sr import ContentItem, base_dataset, code_item, declare_local_scheme

# fpdf2's font subsetting logs every table at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)

# A Unicode font when the system has one (names and text in any script); else Helvetica,
# with characters outside Latin-1 replaced.
UNICODE_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)


def render_pdf(
    title: str,
    study: dict[str, str],
    items: list[ContentItem],
    addenda: list[dict],
    status: str,
    signer: str,
    signed_at: datetime,
) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_creator("Tessera")
    font = next((path for path in UNICODE_FONTS if path.exists()), None)
    clean: Callable[[str], str] = _latin1
    family = "Helvetica"
    if font is not None:
        pdf.add_font("Report", fname=str(font))
        family, clean = "Report", str
    pdf.add_page()
    pdf.set_font(family, size=16)
    pdf.multi_cell(0, 9, clean(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    header = [
        ("Patient", study.get("PatientName", "").replace("^", " ").strip()),
        ("Patient ID", study.get("PatientID", "")),
        ("Birth date", _date(study.get("PatientBirthDate", ""))),
        ("Sex", study.get("PatientSex", "")),
        ("Study", study.get("StudyDescription", "")),
        ("Study date", _date(study.get("StudyDate", ""))),
        ("Accession", study.get("AccessionNumber", "")),
        ("Status", status),
    ]
    for label, value in header:
        pdf.multi_cell(0, 5, clean(f"{label}: {value}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for item in items:
        pdf.set_font(family, size=12)
        pdf.multi_cell(0, 7, clean(item.label), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=10)
        pdf.multi_cell(0, 5, clean(item.display()), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    for addendum in addenda:
        pdf.set_font(family, size=12)
        heading = f"Addendum by {addendum.get('author', '')} ({addendum.get('signed_at', '')})"
        pdf.multi_cell(0, 7, clean(heading), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=10)
        pdf.multi_cell(0, 5, clean(addendum.get("text", "")), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.ln(4)
    pdf.set_font(family, size=10)
    signed = signed_at.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    pdf.multi_cell(0, 5, clean(f"Electronically signed by {signer} on {signed}"))
    return bytes(pdf.output())


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 else value


def encapsulated_pdf(
    study: dict[str, str],
    pdf: bytes,
    sop_instance_uid: str,
    series_instance_uid: str,
    instance_number: int,
    title: str,
    document_code: dict,
    made: datetime,
) -> Dataset:
    local = made.astimezone()
    ds = base_dataset(
        study,
        EncapsulatedPDFStorage,
        sop_instance_uid,
        series_instance_uid,
        "DOC",
        902,
        instance_number,
        local,
    )
    ds.SeriesDescription = "Report (PDF)"
    ds.ConversionType = "SYN"
    ds.AcquisitionDateTime = local.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the rendering names the patient
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = [code_item(document_code)]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf if len(pdf) % 2 == 0 else pdf + b"\x00"
    ds.EncapsulatedDocumentLength = len(pdf)
    declare_local_scheme(ds, [document_code])
    return ds
