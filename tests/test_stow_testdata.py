"""Every file of pydicom's test set and of pydicom-data that is a storable Part 10 object
ingests over STOW-RS and is reported correctly; the others are refused with the reason."""

from __future__ import annotations

import hashlib

import httpx
import pydicom
import pytest

from tessera.client.stow import multipart_stream, request_content_type
from tessera.dicomweb import multipart_writer
from tests.conftest import ServerProcess, dicom_testdata_files, index_rows

# Files in those sets that are not storable objects, and why (Failure Reason).
NOT_STORABLE = {
    # no File Meta Information / 'DICM' prefix: not Part 10
    "OT-PAL-8-face.dcm": 0xC001,
    "ExplVR_BigEndNoMeta.dcm": 0xC001,
    "ExplVR_LitEndNoMeta.dcm": 0xC001,
    "no_meta.dcm": 0xC001,
    "rtstruct.dcm": 0xC001,
    # cut off on purpose
    "MR_truncated.dcm": 0xC002,
    "rtplan_truncated.dcm": 0xC002,
    "emri_small_jpeg_2k_lossless_too_short.dcm": 0xC002,
    # required UIDs missing or not UIDs
    "bad_sequence.dcm": 0xA900,
    "JPEGLSNearLossless_08.dcm": 0xA900,
    "JPEGLSNearLossless_16.dcm": 0xA900,
    "SC_rgb_jls_lossy_line.dcm": 0xA900,
    "SC_rgb_jls_lossy_sample.dcm": 0xA900,
    "UN_sequence.dcm": 0xA900,
    "empty_charset_LEI.dcm": 0xA900,
    "meta_missing_tsyntax.dcm": 0xA900,
    "nested_priv_SQ.dcm": 0xA900,
    "no_meta_group_length.dcm": 0xA900,
    "priv_SQ.dcm": 0xA900,
}


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    # One database kind is enough here: the PostgreSQL path is covered by tests/test_stow.py.
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


def test_files_made_by_others_ingest(server: ServerProcess) -> None:
    files = dicom_testdata_files()
    assert len(files) > 100
    by_uid: dict[str, list] = {}
    outcomes: dict[str, tuple[bool, int | None]] = {}
    with httpx.Client(timeout=120) as client:
        for path in files:
            boundary = multipart_writer.new_boundary()
            response = client.post(
                f"{server.dicomweb}/studies",
                content=b"".join(multipart_stream([path], boundary)),
                headers={"Content-Type": request_content_type(boundary)},
            )
            assert response.status_code in (200, 400, 409), (path.name, response.text)
            body = response.json()
            stored = body.get("00081199", {}).get("Value", [])
            failed = body.get("00081198", {}).get("Value", [])
            assert len(stored) + len(failed) == 1
            if stored:
                assert response.status_code == 200
                uid = stored[0]["00081155"]["Value"][0]
                assert uid == _sop_uid(path)
                outcomes[path.name] = (True, None)
                by_uid.setdefault(uid, []).append(path)
            else:
                outcomes[path.name] = (False, failed[0]["00081197"]["Value"][0])
    refused = {name: reason for name, (ok, reason) in outcomes.items() if not ok}
    # Files sharing a SOP Instance UID with different bytes conflict (0x0111); that is correct.
    conflicts = {n for n, r in refused.items() if r == 0x0111}
    assert {n: r for n, r in refused.items() if n not in conflicts} == {
        n: r for n, r in NOT_STORABLE.items() if n in outcomes
    }
    for name in conflicts:
        assert _sop_uid(next(p for p in files if p.name == name)) in by_uid
    # Every stored file is in the index, byte for byte.
    rows = index_rows(server.database_url, "SELECT sop_instance_uid, sha256 FROM instance")
    digests = {uid: sha for uid, sha in rows}
    for uid, paths in by_uid.items():
        assert digests[uid] in {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert server.alive()


def _sop_uid(path) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return (
            str(
                pydicom.dcmread(path, stop_before_pixels=True, force=True).get("SOPInstanceUID", "")
            ).strip()
            or None
        )
    except Exception:
        return None
