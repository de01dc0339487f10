"""Encapsulated PDF Storage (PS3.3 A.45.1): the PDF's bytes unchanged in Encapsulated
Document, its exact length in Encapsulated Document Length (the element is padded to an
even length), so the PDF comes back byte for byte."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

from tessera.storage.documents.common import (
    DocumentDescription,
    add_sc_equipment,
    new_document_dataset,
)

TRANSFER_SYNTAX = ExplicitVRLittleEndian
MIME_TYPE = "application/pdf"


def encapsulated_pdf(study: Dataset, pdf: bytes, description: DocumentDescription) -> Dataset:
    ds = new_document_dataset(study, EncapsulatedPDFStorage, "DOC", description)
    add_sc_equipment(ds)
    ds.AcquisitionDateTime = ds.ContentDate + ds.ContentTime
    ds.BurnedInAnnotation = "YES"  # a document may show who it is about
    ds.DocumentTitle = description.title[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = MIME_TYPE
    ds.EncapsulatedDocument = pdf if len(pdf) % 2 == 0 else pdf + b"\x00"
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def pdf_of(ds: Dataset) -> bytes:
    """The encapsulated PDF as it was given (padding removed)."""
    data = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 <= int(length) <= len(data):
        return data[: int(length)]
    return data.rstrip(b"\x00") if data.endswith(b"\x00") else data
