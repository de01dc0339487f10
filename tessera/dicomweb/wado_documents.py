"""Rendered images of documents: an Encapsulated PDF's first page (tessera/storage/pdf_render.py).

A PDF that cannot be drawn (encrypted, damaged) gets a plain placeholder page rather than
an error, so a thumbnail strip never shows a hole; the response then carries a Warning.
"""

from __future__ import annotations

import logging

import pydicom
from pydicom.uid import EncapsulatedPDFStorage

from tessera.index.retrieve import RetrievedInstance
from tessera.storage.blobstore import BlobStore
from tessera.storage.documents.pdf import pdf_of
from tessera.storage.pdf_render import PdfNotDrawable, placeholder, render_pdf_page
from tessera.storage.render import RenderOptions

log = logging.getLogger(__name__)
ENCAPSULATED_PDF = str(EncapsulatedPDFStorage)


def render_document(store: BlobStore, item: RetrievedInstance, options: RenderOptions) -> bytes:
    """The first page of the instance's PDF; a placeholder page when it cannot be drawn."""
    with store.open(item.blob_key) as fh:
        dataset = pydicom.dcmread(fh)
    try:
        if "EncapsulatedDocument" not in dataset:
            raise PdfNotDrawable("the instance holds no Encapsulated Document")
        return render_pdf_page(pdf_of(dataset), options)
    except PdfNotDrawable as exc:
        log.info(
            "PDF drawn as a placeholder",
            extra={"sop_instance_uid": item.sop_instance_uid, "reason": str(exc)},
        )
        return placeholder(options, "PDF")
