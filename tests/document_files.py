"""Document files for the documents tests, made here (PDFs by fpdf2, images by Pillow,
H.264 MP4 by PyAV when installed)."""

from __future__ import annotations

import io

from fpdf import FPDF
from PIL import Image


def pdf_bytes(pages: int = 2, text: str = "Consent form", filler: int = 0) -> bytes:
    """A real PDF; `filler` lines of text make it larger (over the bulk data threshold)."""
    pdf = FPDF()
    pdf.set_compression(False)
    pdf.set_font("helvetica", size=12)
    for page in range(pages):
        pdf.add_page()
        pdf.cell(text=f"{text} page {page + 1}")
        if page == 0:
            pdf.rect(20, 40, 120, 80, style="F")  # a black box only on the first page
        for line in range(filler):
            pdf.text(10, 20 + (line % 50) * 5, f"line {line} {'x' * (line % 60)}")
    data = bytes(pdf.output())
    return data if len(data) % 2 else data + b"\n"  # odd length: padding must not show


def jpeg_bytes(width: int = 64, height: int = 48, progressive: bool = False) -> bytes:
    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            image.putpixel((x, y), (x * 4 % 256, y * 5 % 256, 128))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, progressive=progressive)
    return out.getvalue()


def png_bytes(width: int = 40, height: int = 30, mode: str = "RGBA") -> bytes:
    image = Image.new(mode, (width, height))
    for x in range(width):
        for y in range(height):
            image.putpixel(
                (x, y), (x * 6 % 256, y * 8 % 256, 50, 255) if mode == "RGBA" else x * 6 % 256
            )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def mp4_bytes(frames: int = 10, width: int = 64, height: int = 48, fps: int = 10) -> bytes:
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"profile": "high"}
        for index in range(frames):
            array = np.full((height, width, 3), index * 20 % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def multipart_body(parts: list[bytes], boundary: str) -> bytes:
    """A STOW-RS request body of application/dicom parts."""
    from tessera.dicomweb.multipart_writer import body

    return body(boundary, parts)
