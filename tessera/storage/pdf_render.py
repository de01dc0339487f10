"""The first page of a PDF (an Encapsulated PDF's document) drawn as a consumer image, for
/rendered and /thumbnail, with pypdfium2 (PDFium, the renderer Chromium uses).

A PDF that cannot be drawn (encrypted, broken) raises PdfNotDrawable; `placeholder` then
makes a plain page that says so, so a thumbnail strip never shows a hole or an error.
"""

from __future__ import annotations

import threading

from PIL import Image, ImageDraw

from tessera.storage.render import RenderOptions, encode_image, fit_to_viewport

# Without a viewport, pages are drawn at this many pixels per PDF point (1.5: 108 dpi).
DEFAULT_SCALE = 1.5
# The longest side drawn, whatever the page size says (a poster-sized page stays bounded).
MAX_SIDE = 4000
# PDFium is not thread-safe: one page is drawn at a time per process.
_PDFIUM = threading.Lock()


class PdfNotDrawable(ValueError):
    """The PDF cannot be drawn (encrypted, damaged or without pages)."""


def render_pdf_page(pdf: bytes, options: RenderOptions, page_index: int = 0) -> bytes:
    import pypdfium2 as pdfium

    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(pdf)
        except pdfium.PdfiumError as exc:
            raise PdfNotDrawable(f"the PDF cannot be opened: {exc}") from exc
        try:
            if len(document) <= page_index:
                raise PdfNotDrawable(f"the PDF has {len(document)} page(s)")
            page = document[page_index]
            width, height = page.get_size()
            if width <= 0 or height <= 0:
                raise PdfNotDrawable("the PDF page has no size")
            scale = _scale(width, height, options)
            image = page.render(scale=scale, fill_color=(255, 255, 255, 255)).to_pil()
            page.close()
        finally:
            document.close()
    image = image.convert("RGB")
    return encode_image(fit_to_viewport(image, options), options)


def _scale(width: float, height: float, options: RenderOptions) -> float:
    scale = DEFAULT_SCALE
    if options.viewport is not None:
        box_width, box_height = options.viewport
        scales = [
            s for s in (box_width and box_width / width, box_height and box_height / height) if s
        ]
        scale = min(scales)
    return min(scale, MAX_SIDE / max(width, height))


def placeholder(options: RenderOptions, label: str = "PDF") -> bytes:
    """A blank page with `label`, in the proportions of A4 portrait."""
    image = Image.new("RGB", (420, 594), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 419, 593), outline=(160, 160, 160), width=4)
    draw.text((170, 280), label, fill=(90, 90, 90), font_size=40)
    return encode_image(fit_to_viewport(image, options), options)
