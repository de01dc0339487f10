"""What a document file is, from its bytes (its name and declared type only have to agree).

A file whose content is not what its name or declared media type claims is refused: a
"PDF" that does not start like one is not stored as a PDF.
"""

from __future__ import annotations

import enum
from pathlib import PurePath


class DocumentKind(enum.Enum):
    PDF = "application/pdf"
    JPEG = "image/jpeg"
    PNG = "image/png"
    TEXT = "text/plain"
    MP4 = "video/mp4"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    DOC = "application/msword"
    ODT = "application/vnd.oasis.opendocument.text"
    RTF = "application/rtf"

    @property
    def needs_office_converter(self) -> bool:
        return self in (DocumentKind.DOCX, DocumentKind.DOC, DocumentKind.ODT, DocumentKind.RTF)


class UnsupportedDocument(ValueError):
    """The file is not a supported document, or not what it claims to be (HTTP 415)."""


_BY_EXTENSION = {
    ".pdf": DocumentKind.PDF,
    ".jpg": DocumentKind.JPEG,
    ".jpeg": DocumentKind.JPEG,
    ".png": DocumentKind.PNG,
    ".txt": DocumentKind.TEXT,
    ".text": DocumentKind.TEXT,
    ".mp4": DocumentKind.MP4,
    ".m4v": DocumentKind.MP4,
    ".docx": DocumentKind.DOCX,
    ".doc": DocumentKind.DOC,
    ".odt": DocumentKind.ODT,
    ".rtf": DocumentKind.RTF,
}
_BY_MEDIA_TYPE = {kind.value: kind for kind in DocumentKind} | {
    "image/jpg": DocumentKind.JPEG,
    "image/pjpeg": DocumentKind.JPEG,
    "text/rtf": DocumentKind.RTF,
    "application/x-rtf": DocumentKind.RTF,
}
# Declared types that say nothing about the content.
_UNINFORMATIVE = ("", "application/octet-stream", "binary/octet-stream")


def _kind_from_content(head: bytes) -> DocumentKind | None:
    """The kind the first bytes (at least 64, ideally 1 KiB) show, None when unknown."""
    if head[:1024].lstrip(b"\xef\xbb\xbf\r\n\t ").startswith(b"%PDF-"):
        return DocumentKind.PDF
    if head.startswith(b"\xff\xd8\xff"):
        return DocumentKind.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return DocumentKind.PNG
    if head[4:8] == b"ftyp":
        return DocumentKind.MP4
    if head.startswith(b"{\\rtf"):
        return DocumentKind.RTF
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return DocumentKind.DOC  # an OLE2 compound file: Word 97-2003
    if head.startswith(b"PK\x03\x04"):
        if head[30:38] == b"mimetype" and b"application/vnd.oasis.opendocument.text" in head[:120]:
            return DocumentKind.ODT
        if b"word/" in head[:1024] or b"[Content_Types].xml" in head[:1024]:
            return DocumentKind.DOCX
        return None
    if _looks_like_text(head):
        return DocumentKind.TEXT
    return None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    sample = head[:4096]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sample's end is still text.
        if exc.start < len(sample) - 4:
            return False
    return True


def document_kind(head: bytes, filename: str | None, declared_type: str | None) -> DocumentKind:
    """The kind of a document, from its first bytes; the file name's extension and the
    declared media type, when they say anything, must agree with the content."""
    if not head:
        raise UnsupportedDocument("the file is empty (0 bytes)")
    claimed: DocumentKind | None = None
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in _UNINFORMATIVE:
        claimed = _BY_MEDIA_TYPE.get(declared)
        if claimed is None:
            raise UnsupportedDocument(f"media type {declared} is not a supported document type")
    suffix = PurePath(filename or "").suffix.lower()
    by_name = _BY_EXTENSION.get(suffix)
    if claimed is None:
        claimed = by_name
    content = _kind_from_content(head)
    if content is None:
        what = f" ({filename})" if filename else ""
        raise UnsupportedDocument(
            f"the file{what} is not a supported document: PDF, JPEG, PNG, plain text, MP4, "
            "Word (.docx, .doc), OpenDocument text (.odt) or RTF"
        )
    if claimed is not None and claimed is not content:
        if not (content is DocumentKind.TEXT and claimed is DocumentKind.TEXT):
            raise UnsupportedDocument(
                f"the file claims to be {claimed.value} but its content is "
                f"{content.value if content is not DocumentKind.TEXT else 'plain text'}"
            )
    if claimed is None and content is DocumentKind.TEXT:
        # Text without a name or type saying so is probably something else.
        raise UnsupportedDocument(
            "the file is not a recognised document; send plain text as text/plain or *.txt"
        )
    return content
