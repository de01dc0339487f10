"""Server memory for one big multi-frame instance over each DIMSE path and a transcode.

Generates one uncompressed multi-frame instance (default 500 frames of 1024x1024 16-bit,
about 1 GB; written frame by frame, never held whole), starts `tessera serve` with its
DIMSE listener and measures the server's RSS growth (peak minus the baseline taken just
before the operation, the server process and its children summed, sampled every 20 ms)
while dcmtk's tools and an HTTP client move it:

- C-STORE in (`storescu`);
- C-MOVE out to a `storescp` accepting the stored syntax (sent as stored);
- C-MOVE out to a `storescp` accepting implicit VR little endian only (converted);
- C-GET (`getscu`);
- WADO-RS instance asked in JPEG-LS lossless (transcoded on retrieval);
- WADO-RS study asked as multipart/related in JPEG-LS lossless (transcoded on retrieval);
- routed by STOW-RS to another DICOMweb archive (a routing rule's "send again"; the
  destination is a sink in this script that reads the request and answers 200).

    python benchmarks/dimse_memory.py [--frames 500] [--size 1024] [--wado-only] [--keep]

``--wado-only`` stores the instance (C-STORE, measured) and measures the WADO-RS paths and
routing only.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RssSampler, free_port, start_tessera  # noqa: E402
from dimse import tool, wait_port  # noqa: E402

SCU = "MEMSCU"
DESTINATION = "MEMDEST"
IMPLICIT_DESTINATION = "MEMIMPL"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
MB = 1024 * 1024


def write_instance(path: Path, frames: int, size: int) -> Dataset:
    """A multi-frame 16-bit instance, header through pydicom, Pixel Data frame by frame."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MULTIFRAME_WORD_SC
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "BENCH^MEMORY"
    ds.PatientID = "MEM-1"
    ds.Modality = "OT"
    ds.StudyDate = "20260101"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    frame_bytes = size * size * 2
    rng = np.random.default_rng(1)
    ramp = (np.add.outer(np.arange(size), np.arange(size)) % 4096).astype("<u2")
    with open(path, "ab") as fh:
        fh.write(b"\xe0\x7f\x10\x00OW\x00\x00")
        fh.write((frame_bytes * frames).to_bytes(4, "little"))
        for number in range(frames):
            noise = rng.integers(0, 16, size=(size, size), dtype="<u2")
            fh.write(((ramp + number + noise) & 0x0FFF).astype("<u2").tobytes())
    return ds


def received_bytes(folder: Path) -> str:
    return f"{sum(f.stat().st_size for f in folder.glob('*')) / MB:.0f} MB received"


def measured(label: str, pid: int, args: list[str], folder: Path | None = None) -> None:
    time.sleep(2)  # let the server settle (freed memory returned) before the baseline
    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
    status = "ok" if result.returncode == 0 else f"FAILED rc={result.returncode}"
    print(
        f"{label:<44} RSS growth {(sampler.peak - sampler.baseline) / MB:8.1f} MB "
        f"(baseline {sampler.baseline / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB), "
        f"{elapsed:.1f} s, {status}" + (f", {received_bytes(folder)}" if folder else ""),
        flush=True,
    )
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-2000:], file=sys.stderr)


def wado_measured(label: str, pid: int, url: str, accept: str) -> None:
    time.sleep(2)
    received = 0
    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        with httpx.stream("GET", url, headers={"Accept": accept}, timeout=600) as response:
            for chunk in response.iter_bytes():
                received += len(chunk)
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
    print(
        f"{label:<44} RSS growth {(sampler.peak - sampler.baseline) / MB:8.1f} MB "
        f"(baseline {sampler.baseline / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB), "
        f"{elapsed:.1f} s, HTTP {response.status_code}, {received / MB:.0f} MB received",
        flush=True,
    )


class StowSink(http.server.BaseHTTPRequestHandler):
    """A DICOMweb destination that reads each STOW-RS request in 1 MB pieces and keeps only
    the byte count (the server under test is measured, not the sink)."""

    received = 0
    done = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        remaining = int(self.headers["Content-Length"])
        while remaining:
            chunk = self.rfile.read(min(MB, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            StowSink.received += len(chunk)
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        StowSink.done.set()

    def log_message(self, *args: object) -> None:
        pass


def routed_measured(label: str, pid: int, api: str, study: str) -> None:
    """A routing rule to the sink, then "send again" of the study; RSS until the sink has it."""
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StowSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    rule = {
        "name": "memory",
        "destination": {
            "kind": "dicomweb",
            "url": f"http://127.0.0.1:{sink.server_address[1]}/dicomweb",
        },
    }
    httpx.post(f"{api}/routes", json=rule, timeout=30).raise_for_status()
    time.sleep(2)
    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        sent = httpx.post(f"{api}/routes/memory/send", json={"study_instance_uid": study})
        sent.raise_for_status()
        finished = StowSink.done.wait(600)
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
    sink.shutdown()
    print(
        f"{label:<44} RSS growth {(sampler.peak - sampler.baseline) / MB:8.1f} MB "
        f"(baseline {sampler.baseline / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB), "
        f"{elapsed:.1f} s, {'ok' if finished else 'TIMED OUT'}, "
        f"{StowSink.received / MB:.0f} MB received",
        flush=True,
    )


def add_peer(env: dict[str, str], title: str, port: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "tessera.cli", "peers", "add", title]
        + ["--host", "127.0.0.1", "--port", str(port)],
        env=env,
        check=True,
        capture_output=True,
    )


def storescp(port: int, title: str, folder: Path, *options: str) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [tool("storescp"), *options, "-aet", title, "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--size", type=int, default=1024, help="rows = columns")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--wado-only", action="store_true", help="store the instance, then the WADO-RS paths only"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dimse-memory-"))
    source = workdir / "big.dcm"
    started = time.perf_counter()
    ds = write_instance(source, args.frames, args.size)
    print(
        f"instance: {args.frames} frames of {args.size}x{args.size} 16-bit, "
        f"{source.stat().st_size / MB:.0f} MB, written in {time.perf_counter() - started:.1f} s"
    )
    port, destination_port, implicit_port = free_port(), free_port(), free_port()
    env = {"TESSERA_DATA_DIR": str(workdir / "data"), "TESSERA_DIMSE_PORT": str(port)}
    # One HTTP worker in the server's own process: uvicorn's supervisor restarts workers
    # that miss a ping, which happens on a loaded machine while a frame is being encoded.
    env["TESSERA_WORKERS"] = "1"
    env["TESSERA_OUTBOUND_ALLOW_PRIVATE"] = "true"  # the routing sink is on loopback
    server = start_tessera("sqlite", extra_env=env, startup_timeout=600)
    destinations: list[subprocess.Popen] = []
    try:
        wait_port(port)
        cli_env = dict(os.environ, **env)
        add_peer(cli_env, SCU, 0)
        add_peer(cli_env, DESTINATION, destination_port)
        add_peer(cli_env, IMPLICIT_DESTINATION, implicit_port)
        pid = server.pid
        called = ["-aet", SCU, "-aec", "TESSERA"]
        address = ["127.0.0.1", str(port)]
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}"]

        measured("C-STORE in (storescu)", pid, [tool("storescu"), *called, *address, str(source)])

        if not args.wado_only:
            destinations.append(storescp(destination_port, DESTINATION, workdir / "moved"))
            measured(
                "C-MOVE out, as stored (storescp)",
                pid,
                [tool("movescu"), "-S", *called, "-aem", DESTINATION, *keys, *address],
                workdir / "moved",
            )
            shutil.rmtree(workdir / "moved", ignore_errors=True)

            destinations.append(
                storescp(implicit_port, IMPLICIT_DESTINATION, workdir / "implicit", "+xi")
            )
            measured(
                "C-MOVE out, converted (storescp +xi)",
                pid,
                [tool("movescu"), "-S", *called, "-aem", IMPLICIT_DESTINATION, *keys, *address],
                workdir / "implicit",
            )
            shutil.rmtree(workdir / "implicit", ignore_errors=True)

            (workdir / "got").mkdir()
            measured(
                "C-GET (getscu)",
                pid,
                [tool("getscu"), "-S", *called, "-od", str(workdir / "got"), *keys, *address],
                workdir / "got",
            )
            shutil.rmtree(workdir / "got", ignore_errors=True)

        study = f"{server.dicomweb}/studies/{ds.StudyInstanceUID}"
        wado_measured(
            "WADO-RS instance as JPEG-LS lossless",
            pid,
            f"{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
            f"application/dicom; transfer-syntax={JPEG_LS_LOSSLESS}",
        )
        wado_measured(
            "WADO-RS study multipart as JPEG-LS lossless",
            pid,
            study,
            f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_LS_LOSSLESS}',
        )
        api = server.dicomweb.replace("/dicomweb", "/api/v1")
        routed_measured("routed by STOW-RS (send again)", pid, api, ds.StudyInstanceUID)
    finally:
        for process in destinations:
            process.terminate()
            process.wait(10)
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
