"""Word, OpenDocument and RTF files converted to PDF by LibreOffice, headless.

`soffice` is looked up on PATH (or TESSERA_SOFFICE). Without it these files are refused
with a message that names the missing converter. Each conversion runs in its own temporary
profile directory (LibreOffice cannot share one between processes) with a time limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CONVERT_TIMEOUT_SECONDS = 120


class ConverterMissing(RuntimeError):
    """No office converter is installed (HTTP 415)."""


class ConversionFailed(ValueError):
    """The converter ran but made no PDF (a broken or protected file; HTTP 422)."""


def soffice_path() -> str | None:
    configured = os.environ.get("TESSERA_SOFFICE")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("soffice") or shutil.which("libreoffice")


def office_to_pdf(source: Path, suffix: str) -> bytes:
    """The PDF LibreOffice makes of the file at `source` (`suffix` tells it the format)."""
    soffice = soffice_path()
    if soffice is None:
        raise ConverterMissing(
            "converting Word, OpenDocument and RTF files to PDF needs LibreOffice "
            "(soffice), which is not installed on this server; send a PDF instead"
        )
    with tempfile.TemporaryDirectory(prefix="tessera-office-") as work:
        folder = Path(work)
        document = folder / f"document{suffix}"
        shutil.copyfile(source, document)
        profile = (folder / "profile").as_uri()
        try:
            completed = subprocess.run(
                [
                    soffice,
                    f"-env:UserInstallation={profile}",
                    "--headless",
                    "--norestore",
                    "--convert-to",
                    "pdf",
                    "--outdir",
                    str(folder),
                    str(document),
                ],
                capture_output=True,
                timeout=CONVERT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ConversionFailed(
                f"LibreOffice did not convert the file within {CONVERT_TIMEOUT_SECONDS} s"
            ) from exc
        made = folder / "document.pdf"
        if not made.is_file() or made.stat().st_size == 0:
            detail = completed.stderr.decode(errors="replace").strip()[:200]
            raise ConversionFailed(
                "LibreOffice could not convert the file to PDF" + (f": {detail}" if detail else "")
            )
        return made.read_bytes()
