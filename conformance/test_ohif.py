"""OHIF v3, the reference DICOMweb viewer, in Debian's headless Chromium against a real
`tessera serve`: the study list shows every study with its patient's name, each study opens
with pixels on screen (uncompressed CT, a JPEG 2000 series, a multi-frame RGB cine that plays,
an Encapsulated PDF; and what Tessera makes itself: a PDF and a JPEG photo attached through the
documents endpoint, a signed report's PDF), and no DICOMweb request fails. Once with OHIF on
Tessera's own origin (`tessera serve --viewer`), once from another origin (CORS).

Screenshots: conformance/artifacts/ohif-<origin>/ (git-ignored)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from conformance.conftest import ARTIFACTS, OHIF_DIR, stow
from conformance.studyset import Study, viewer_study_set
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess, free_port
from tests.document_files import jpeg_bytes, pdf_bytes


def drive(spec: dict, workdir: Path) -> dict:
    """Run the playwright driver (conformance/ohif/drive.mjs) and return its report."""
    spec_path = workdir / "ohif-spec.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        ["node", str(OHIF_DIR / "drive.mjs"), str(spec_path)],
        cwd=OHIF_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"driver failed:\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Kept beside the screenshots: what the browser asked for and what it saw.
    (Path(spec["artifacts"]) / "report.json").write_text(json.dumps(report, indent=2))
    return report


def upload(server: ServerProcess) -> list[Study]:
    studies = viewer_study_set()
    for study in studies:
        stow(server.dicomweb, study.instances)
    return studies + made_by_tessera(server)


def made_by_tessera(server: ServerProcess) -> list[Study]:
    """Objects Tessera itself creates, each opened alone (SeriesInstanceUIDs=...): a PDF and a
    JPEG photo attached to a CT study through the documents endpoint (Encapsulated PDF, VL
    Photographic Image), and the PDF of a report signed through the reports API."""
    attached = StudySpec(patient_name="DOCUMENTS^ATTACHED", patient_id="ATT-1")
    stow(server.dicomweb, [ct_image(attached, generate_uid(), 1, 64, 64)])
    uid = attached.study_instance_uid
    made = []
    for name, kind, file in (
        ("document", "pdf", ("consent.pdf", pdf_bytes(), "application/pdf")),
        ("photo", "image", ("wound.jpg", jpeg_bytes(320, 240), "image/jpeg")),
    ):
        response = httpx.post(
            f"{server.dicomweb}/studies/{uid}/documents",
            files={"file": file},
            data={"title": name},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        series = response.json()["SeriesInstanceUID"]
        made.append(Study(name, kind, attached.patient_name, uid, [], series))

    reported = StudySpec(patient_name="REPORT^SIGNED", patient_id="REP-1")
    stow(server.dicomweb, [ct_image(reported, generate_uid(), 1, 64, 64)])
    uid = reported.study_instance_uid
    reports = f"{server.base_url}/api/v1/studies/{uid}/reports"
    body = {"sections": {"findings": "No acute findings.", "impression": "Normal study."}}
    draft = httpx.post(reports, json=body, timeout=30)
    assert draft.status_code == 201, draft.text
    signed = httpx.post(
        f"{reports}/{draft.json()['id']}/sign",
        headers={"If-Match": draft.headers["etag"]},
        timeout=60,
    )
    assert signed.status_code == 200, signed.text
    series = httpx.get(
        f"{server.dicomweb}/studies/{uid}/series", params={"Modality": "DOC"}, timeout=30
    ).json()
    assert len(series) == 1, series
    report_series = series[0]["0020000E"]["Value"][0]
    made.append(Study("report", "pdf", reported.patient_name, uid, [], report_series))
    return made


def spec_studies(studies: list[Study]) -> list[dict]:
    return [
        {
            "studyInstanceUID": s.study_instance_uid,
            "seriesInstanceUID": s.series_instance_uid,
            "kind": s.kind,
            "name": s.name,
        }
        for s in studies
    ]


def check_report(report: dict, studies: list[Study], server: ServerProcess) -> None:
    listed = [row["patientName"] for row in report["studyList"]]
    for study in studies:
        # OHIF shows a PN as "Family, Given".
        family, _, given = study.patient_name.partition("^")
        expected = f"{family}, {given}" if given else family
        assert expected in listed, f"{study.name}: {expected!r} not in the study list {listed}"
    assert len(listed) == len({s.study_instance_uid for s in studies}), listed

    by_uid = {
        (entry["studyInstanceUID"], entry.get("seriesInstanceUID")): entry
        for entry in report["studies"]
    }
    for study in studies:
        entry = by_uid[(study.study_instance_uid, study.series_instance_uid)]
        assert "error" not in entry, f"{study.name}: {entry['error']}"
        if study.kind == "pdf":
            response = entry["embeddedResponse"]
            assert entry["embedded"] and response, f"no PDF shown: {entry}"
            assert response["status"] == 200, entry
            assert response["contentType"].startswith("application/pdf"), entry
            if "head" in response:  # a blob OHIF built from the bulk data it fetched
                assert response["head"].startswith("%PDF-"), entry
            continue
        pixels = entry["pixels"]
        assert pixels is not None, f"{study.name}: no viewport canvas"
        assert pixels["max"] - pixels["min"] > 16 and pixels["distinct"] > 8, (
            f"{study.name}: the viewport is uniform, nothing was rendered: {pixels}"
        )
        if study.name == "photo":  # the JPEG itself, in colour (not the study's CT)
            assert pixels["colourful"] > 0.2, f"the photo is not shown in colour: {pixels}"
        elif study.kind == "image":  # the greyscale CT and MR series
            assert pixels["colourful"] < 0.01, f"{study.name}: {pixels}"
        if study.kind == "cine":
            cine = entry["cine"]
            assert cine["totalFrames"] == 30, cine
            assert len(cine["framesShown"]) >= 3, f"the cine did not play: {cine}"
            assert cine["distinctImages"] >= 3, f"the cine did not change the image: {cine}"

    # The viewer used each kind of resource: searches, series metadata, frames, and the
    # server-rendered thumbnails of the study browser.
    kinds = report["requestKinds"]
    for kind in ("search", "metadata", "frames", "thumbnail"):
        assert kinds.get(kind, 0) > 0, kinds
    assert report["failedRequests"] == [], f"{report['failedRequests']}\n{server.log()[-3000:]}"
    assert report["corsErrors"] == [], report["corsErrors"]
    assert report["assetFailures"] == [], report["assetFailures"]


def artifacts_dir(name: str) -> Path:
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def test_ohif_same_origin(sqlite_server_factory, ohif_dist, chromium, tmp_path):
    """`tessera serve --viewer DIST`: OHIF at /viewer/ on the server's own origin."""
    server = sqlite_server_factory(extra_args=["--viewer", str(ohif_dist)]).start()
    studies = upload(server)
    report = drive(
        {
            "viewerUrl": f"{server.base_url}/viewer/",
            "dicomwebRoot": server.dicomweb,
            "artifacts": str(artifacts_dir("ohif-same-origin")),
            "studies": spec_studies(studies),
            "chromium": chromium,
        },
        tmp_path,
    )
    check_report(report, studies, server)


def test_ohif_cross_origin(sqlite_server_factory, ohif_dist, chromium, tmp_path):
    """OHIF served from another origin (another port) reads Tessera through CORS."""
    viewer_port = free_port()
    viewer_origin = f"http://127.0.0.1:{viewer_port}"
    server = sqlite_server_factory(env_extra={"TESSERA_CORS_ORIGINS": viewer_origin}).start()
    studies = upload(server)
    viewer = subprocess.Popen(
        [
            sys.executable, "-m", "tessera.dicomweb.viewer", str(ohif_dist),
            "--port", str(viewer_port), "--dicomweb-root", server.dicomweb,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_up(f"{viewer_origin}/viewer/app-config.js")
        report = drive(
            {
                "viewerUrl": f"{viewer_origin}/viewer/",
                "dicomwebRoot": server.dicomweb,
                "artifacts": str(artifacts_dir("ohif-cross-origin")),
                "studies": spec_studies(studies),
                "chromium": chromium,
            },
            tmp_path,
        )
    finally:
        viewer.terminate()
        viewer.wait(10)
    check_report(report, studies, server)


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")
