"""WADO-RS multipart retrieval of instances converted frame by frame through the spool
folder (TESSERA_CONVERT_IN_MEMORY_MAX_BYTES=0 sends every converted instance that way, as
a big one is): the body is what the whole-instance conversion gave, and the spooled file
is gone once sent or when the client goes away."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, generate_uid

from tessera.storage.transcode import TranscodeError, transcode_instance
from tessera.synthetic import StudySpec, ct_image
from tests.conftest import ServerProcess
from tests.wado_data import StoredObject, build_study, parse_multipart
from tests.wado_fixtures import store

JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax='


def multiframe_native(study_uid: str, frames: int, size: int) -> bytes:
    """A multi-frame 16-bit explicit VR little endian instance with distinct frames."""
    ds = pydicom.dcmread(io.BytesIO(ct_image(StudySpec(), generate_uid(), 1, size, size)))
    ds.StudyInstanceUID = study_uid
    ds.PatientID = "WADO-1"
    ds.NumberOfFrames = frames
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4096, size=(frames, size, size), dtype="<u2")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    for keyword in ("RescaleIntercept", "RescaleSlope"):
        if keyword in ds:
            del ds[keyword]
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def spooling(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("spooled")
    server = ServerProcess(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'index.sqlite3'}",
        env_extra={"TESSERA_CONVERT_IN_MEMORY_MAX_BYTES": "0", "TESSERA_WORKERS": "1"},
    ).start()
    objects = build_study()
    data = multiframe_native(objects[0].study, 12, 64)
    objects.append(
        StoredObject("native_multiframe", data, pydicom.dcmread(io.BytesIO(data), force=True))
    )
    try:
        store(server, objects)
        yield server, objects
    finally:
        server.stop()


def stored_bytes(server: ServerProcess, obj: StoredObject) -> bytes:
    response = httpx.get(
        obj.path(server.dicomweb),
        headers={"Accept": f"application/dicom; transfer-syntax={obj.transfer_syntax}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.parametrize("target", [JPEG_LS_LOSSLESS, EXPLICIT_LE])
def test_spooled_multipart_is_the_whole_instance_conversion(spooling, target: str) -> None:  # type: ignore[no-untyped-def]
    server, objects = spooling
    response = httpx.get(
        f"{server.dicomweb}/studies/{objects[0].study}",
        headers={"Accept": MULTIPART + target},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    parts = {
        pydicom.dcmread(io.BytesIO(payload), stop_before_pixels=True).SOPInstanceUID: payload
        for _, payload in parse_multipart(response.headers["content-type"], response.content)
    }
    by_sop = {obj.sop: obj for obj in objects}
    assert set(parts) <= set(by_sop)
    sent = {by_sop[sop].name for sop in parts}
    # The multi-frame ones went out converted (10, 10 and 12 frames).
    assert {"emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm", "native_multiframe"} <= sent
    for sop, payload in parts.items():
        obj = by_sop[sop]
        stored = stored_bytes(server, obj)
        if obj.transfer_syntax == target:
            assert payload == stored, obj.name
            continue
        # What the whole-instance path (transcode_instance, no coercion) gave, byte for byte.
        assert payload == transcode_instance(stored, target), obj.name
    for name in ("emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm", "native_multiframe"):
        obj = next(o for o in objects if o.name == name)
        sent_ds = pydicom.dcmread(io.BytesIO(parts[obj.sop]))
        stored_ds = pydicom.dcmread(io.BytesIO(stored_bytes(server, obj)))
        assert str(sent_ds.file_meta.TransferSyntaxUID) == target
        assert int(sent_ds.NumberOfFrames) == int(stored_ds.NumberOfFrames) > 1
        assert np.array_equal(sent_ds.pixel_array, stored_ds.pixel_array), name
    # Nothing left in the spool folder (the spooled parts are unnamed files).
    assert spool_empty(server)


def test_unconvertible_instance_is_left_out_not_500(spooling) -> None:  # type: ignore[no-untyped-def]
    server, objects = spooling
    # What the server cannot make in JPEG-LS is left out of the body; the rest arrives.
    response = httpx.get(
        f"{server.dicomweb}/studies/{objects[0].study}",
        headers={"Accept": MULTIPART + JPEG_LS_LOSSLESS},
        timeout=120,
    )
    assert response.status_code == 200
    sent = {
        pydicom.dcmread(io.BytesIO(payload), stop_before_pixels=True).SOPInstanceUID
        for _, payload in parse_multipart(response.headers["content-type"], response.content)
    }
    for obj in objects:
        if obj.sop in sent:
            continue
        with pytest.raises(TranscodeError):
            transcode_instance(stored_bytes(server, obj), JPEG_LS_LOSSLESS)


def spool_empty(server: ServerProcess) -> bool:
    spool = server.spool_dir
    return not spool.exists() or list(spool.iterdir()) == []


def spool_files_open(server: ServerProcess) -> list[str]:
    """Files of the server process in its spool folder (unnamed ones show as deleted)."""
    assert server.process is not None
    spool = str(server.spool_dir.resolve())
    found = []
    fd_dir = Path(f"/proc/{server.process.pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith(spool):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_spooled_part_is_freed_when_the_client_goes_away(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        env_extra={"TESSERA_CONVERT_IN_MEMORY_MAX_BYTES": "0", "TESSERA_WORKERS": "1"},
    ).start()
    try:
        study = generate_uid()
        # Two instances of 40 frames: the first is being sent while the second is converted.
        objects = []
        for _ in range(2):
            data = multiframe_native(study, 40, 256)
            objects.append(StoredObject("big", data, pydicom.dcmread(io.BytesIO(data))))
        store(server, objects)
        seen_open = False
        with httpx.stream(
            "GET",
            f"{server.dicomweb}/studies/{study}",
            headers={"Accept": MULTIPART + JPEG_LS_LOSSLESS},
            timeout=120,
        ) as response:
            assert response.status_code == 200
            chunks = response.iter_raw(16 * 1024)
            next(chunks)
            for _ in range(50):
                if spool_files_open(server):
                    seen_open = True
                    break
                time.sleep(0.1)
        assert seen_open, "no spooled part open while the body was being sent"
        deadline = time.time() + 60
        while spool_files_open(server) and time.time() < deadline:
            time.sleep(0.2)
        assert spool_files_open(server) == []
        assert spool_empty(server)
        # The server goes on answering.
        assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
