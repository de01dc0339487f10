"""Upload session commit benchmark (issue 19: < 2 s for 2,000 instances).

Opens a session, STOWs N small CT instances (in studies of 200) into it, then times the
commit request, for Tessera on SQLite and on PostgreSQL; also a 20 MB PDF through the
documents endpoint and a PDF first-page thumbnail.

    python benchmarks/session_commit.py [--instances 2000] [--databases sqlite postgresql]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import start_tessera  # noqa: E402

from tessera.client.stow import request_content_type as content_type  # noqa: E402
from tessera.dicomweb.multipart_writer import body as _body  # noqa: E402
from tessera.dicomweb.multipart_writer import new_boundary  # noqa: E402
from tessera.synthetic import StudySpec, ct_image  # noqa: E402


def fill_session(dicomweb: str, api: str, count: int) -> str:
    session = httpx.post(f"{api}/upload-sessions", json={}, timeout=30).json()["id"]
    batch: list[bytes] = []
    for index in range(count):
        if index % 200 == 0:
            study, series = StudySpec(patient_id=f"S{index // 200}"), generate_uid()
        batch.append(ct_image(study, series, index % 200 + 1, 32, 32))
        if len(batch) == 50 or index == count - 1:
            boundary = new_boundary()
            response = httpx.post(
                f"{dicomweb}/upload-sessions/{session}/studies",
                content=_body(boundary, batch),
                headers={"Content-Type": content_type(boundary)},
                timeout=300,
            )
            assert response.status_code == 200, response.text
            batch = []
    return session


def big_pdf(megabytes: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_compression(False)
    pdf.set_font("helvetica", size=8)
    pdf.add_page()
    pdf.cell(text="Large document")
    data = bytes(pdf.output())
    # A comment block after the end keeps it a valid PDF of the wanted size.
    return data + b"%" + b"x" * (megabytes * 1024 * 1024 - len(data)) + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    for database in args.databases:
        server = start_tessera(database, {"TESSERA_WORKERS": "1"})
        try:
            dicomweb = server.dicomweb
            api = dicomweb.replace("/dicomweb", "/api/v1")
            started = time.perf_counter()
            session = fill_session(dicomweb, api, args.instances)
            filled = time.perf_counter() - started
            started = time.perf_counter()
            response = httpx.post(f"{api}/upload-sessions/{session}/commit", timeout=600)
            commit = time.perf_counter() - started
            assert response.status_code == 200, response.text
            print(
                f"{database}: {args.instances} instances into a session in {filled:.1f} s; "
                f"commit {commit:.2f} s"
            )
            study = response.json()["studies"][0]
            pdf = big_pdf(20)
            started = time.perf_counter()
            stored = httpx.post(
                f"{dicomweb}/studies/{study}/documents",
                files={"file": ("big.pdf", pdf, "application/pdf")},
                data={"title": "Large"},
                timeout=120,
            )
            upload = time.perf_counter() - started
            assert stored.status_code == 201, stored.text
            url = stored.json()["RetrieveURL"] + "/thumbnail"
            times = []
            for _ in range(5):
                started = time.perf_counter()
                thumb = httpx.get(url, headers={"Accept": "image/jpeg"}, timeout=60)
                times.append(time.perf_counter() - started)
                assert thumb.status_code == 200
            print(
                f"{database}: 20 MB PDF through the documents endpoint {upload:.2f} s; "
                f"PDF thumbnail {min(times) * 1000:.0f} ms (best of 5), first {times[0] * 1000:.0f} ms"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
