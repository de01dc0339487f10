"""Rendered images of documents: an Encapsulated PDF's first page (tessera/storage/pdf_render.py),
a video's frame (tessera/storage/video_render.py) and an ECG's tracing
(tessera/storage/waveform_render.py).

A PDF, video or waveform that cannot be drawn (encrypted, damaged, a codec FFmpeg lacks, no
readable samples) gets a plain placeholder page rather than an error, so a thumbnail strip
never shows a hole.
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
from tessera.storage.video_render import (
    VIDEO_TRANSFER_SYNTAXES,
    VideoNotDrawable,
    render_video_frame,
)
from tessera.storage.waveform_render import ECG_WAVEFORMS, WaveformNotDrawable, render_waveform

log = logging.getLogger(__name__)
ENCAPSULATED_PDF = str(EncapsulatedPDFStorage)
__all__ = [
    "ECG_WAVEFORMS",
    "ENCAPSULATED_PDF",
    "VIDEO_TRANSFER_SYNTAXES",
    "render_document",
    "render_ecg",
    "render_video",
]


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


def render_video(
    store: BlobStore, item: RetrievedInstance, number: int, options: RenderOptions
) -> bytes:
    """Frame `number` of the instance's video; a placeholder when it cannot be decoded."""
    try:
        with store.open(item.blob_key) as fh:
            return render_video_frame(fh, number, options)
    except VideoNotDrawable as exc:
        log.info(
            "video drawn as a placeholder",
            extra={"sop_instance_uid": item.sop_instance_uid, "reason": str(exc)},
        )
        return placeholder(options, "VIDEO")


def render_ecg(store: BlobStore, item: RetrievedInstance, options: RenderOptions) -> bytes:
    """The instance's ECG tracing; a placeholder when it cannot be drawn."""
    try:
        with store.open(item.blob_key) as fh:
            return render_waveform(fh, options)
    except WaveformNotDrawable as exc:
        log.info(
            "waveform drawn as a placeholder",
            extra={"sop_instance_uid": item.sop_instance_uid, "reason": str(exc)},
        )
        return placeholder(options, "ECG")
