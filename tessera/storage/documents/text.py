"""Plain text as a PDF (then stored as Encapsulated PDF): the text in a monospaced font,
wrapped to the page, so viewers show it and thumbnails draw it.

Why a PDF rather than a Basic Text SR: every viewer that shows the other documents shows
it, and its first page makes a thumbnail. The text is decoded as UTF-8 (Latin-1 when it is
not valid UTF-8). Characters outside the font are drawn as '?'. The DejaVu Sans Mono font
(Debian: fonts-dejavu-core) covers Latin, Greek and Cyrillic; without it fpdf2's built-in
Courier is used, which covers Latin-1 only.
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSansMono.ttf"),
)
FONT_SIZE = 10


def decode_text(data: bytes) -> str:
    text = data.decode("utf-8-sig", errors="strict") if _is_utf8(data) else data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _font(pdf: FPDF) -> tuple[str, bool]:
    """(font family, whether it is Unicode)."""
    for path in FONT_CANDIDATES:
        if path.is_file():
            pdf.add_font("mono", fname=str(path))
            return "mono", True
    return "courier", False


def text_to_pdf(data: bytes, title: str) -> bytes:
    text = decode_text(data)
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_creator("Tessera")
    pdf.set_auto_page_break(True, margin=15)
    family, unicode = _font(pdf)
    if not unicode:
        text = text.encode("latin-1", errors="replace").decode("latin-1")
    pdf.add_page()
    pdf.set_font(family, size=FONT_SIZE)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for line in text.split("\n") or [""]:
        pdf.multi_cell(
            width, FONT_SIZE * 0.5, line.expandtabs(4) or " ", new_x="LMARGIN", new_y="NEXT"
        )
    return bytes(pdf.output())
