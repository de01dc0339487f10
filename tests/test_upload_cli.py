"""`tessera upload` against a real server: folders, parallel requests, summary, exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tessera.synthetic import StudySpec, ct_image, mr_rle_image
from tests.conftest import ServerProcess, index_rows


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


def run_upload(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "upload", "--url", server.dicomweb, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_study(folder: Path, count: int) -> list[Path]:
    study = StudySpec(patient_name="UPLOAD^CLI")
    series = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(1, count + 1):
        path = folder / "nested" / f"ct{n}.dcm" if n % 2 else folder / f"ct{n}.dcm"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(ct_image(study, series, n, rows=64, columns=64))
        paths.append(path)
    extra = folder / "mr.dcm"
    extra.write_bytes(mr_rle_image(study, generate_uid(), size=32))
    return [*paths, extra]


def test_upload_folder_recursively_in_parallel(server: ServerProcess, tmp_path: Path) -> None:
    files = write_study(tmp_path / "study", 20)
    result = run_upload(server, str(tmp_path / "study"), "--parallel", "3", "--batch-files", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"stored {len(files)} of {len(files)} file(s)" in result.stdout
    assert "failed 0" in result.stdout
    assert index_rows(server.database_url, "SELECT count(*) FROM instance")[0][0] == len(files)


def test_upload_reports_failures_and_exits_non_zero(server: ServerProcess, tmp_path: Path) -> None:
    files = write_study(tmp_path / "mixed", 3)
    (tmp_path / "mixed" / "notes.txt").write_text("not a DICOM file")
    result = run_upload(server, str(tmp_path / "mixed"), "--no-progress")
    assert result.returncode == 1
    assert f"stored {len(files)} of {len(files) + 1} file(s)" in result.stdout
    assert "FAILED" in result.stdout and "0xC001" in result.stdout


def test_upload_with_unknown_source_fails_clearly(server: ServerProcess, tmp_path: Path) -> None:
    write_study(tmp_path / "s", 1)
    result = run_upload(server, str(tmp_path / "s"), "--source", "Nowhere", "--no-progress")
    assert result.returncode == 1
    assert "HTTP 400" in result.stdout and "Nowhere" in result.stdout


def test_upload_of_missing_path_exits_2(server: ServerProcess, tmp_path: Path) -> None:
    result = run_upload(server, str(tmp_path / "does-not-exist"))
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr
