"""WADO-RS retrieval benchmark: Tessera against Orthanc + DICOMweb, in the same run.

Data (the same bytes stored in both through STOW-RS): one study with a CT series of
512x512 x CT_COUNT, a JPEG 2000 lossless MR series (512x512), a 30-frame RGB cine; a
1,000-instance series (64x64 CT) for metadata at scale; and a large study (--big-mb,
default 2048) for whole-study throughput and the server's RSS while it streams.

Prints, per server: series metadata (1,000 instances), study metadata, one native frame
(p50/p90, sequential, as OHIF asks), native frames with 25 in flight (frames/s), one J2K
frame transcoded to uncompressed, a rendered JPEG, whole-study retrieval MB/s and RSS
growth; then the ratios Orthanc / Tessera (above 1: Tessera is faster).

    python benchmarks/wado_retrieve.py [--ct 100] [--big-mb 2048] [--no-orthanc] [--database sqlite]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pydicom
from pydicom.uid import JPEG2000Lossless, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RssSampler, orthanc_available, percentile, start_orthanc, start_tessera  # noqa: E402

from tessera.client.stow import request_content_type  # noqa: E402
from tessera.dicomweb import multipart_writer  # noqa: E402
from tessera.synthetic import StudySpec, ct_image, rgb_cine  # noqa: E402

OHIF_FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
UNCOMPRESSED_FRAME_ACCEPT = (
    "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
)
STUDY_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def j2k_mr(study: StudySpec, series: str, number: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(ct_image(study, series, number, seed=number)))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "MR"
    yy, xx = np.mgrid[0:512, 0:512]
    ds.compress(JPEG2000Lossless, ((xx * 3 + yy * 5 + number) % 4000).astype(np.uint16))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def fast_copies(template: bytes, count: int, study_uid: str, series_uid: str):  # type: ignore[no-untyped-def]
    """`count` instances from one template with fresh UIDs (quick to make, real bytes)."""
    ds = pydicom.dcmread(io.BytesIO(template))
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    for number in range(1, count + 1):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        yield out.getvalue()


def stow(dicomweb: str, instances, batch: int = 20, parallel: int = 4) -> int:  # type: ignore[no-untyped-def]
    def send(group: list[bytes]) -> None:
        boundary = multipart_writer.new_boundary()
        r = client.post(
            f"{dicomweb}/studies",
            content=multipart_writer.body(boundary, group),
            headers={
                "Content-Type": request_content_type(boundary),
                "Accept": "application/dicom+json",
            },
        )
        if r.status_code not in (200, 202):
            raise RuntimeError(f"STOW failed: {r.status_code} {r.text[:200]}")

    sent = 0
    with httpx.Client(timeout=600) as client, ThreadPoolExecutor(parallel) as pool:
        futures, group = [], []
        for data in instances:
            group.append(data)
            sent += len(data)
            if len(group) == batch:
                futures.append(pool.submit(send, group))
                group = []
                if len(futures) > parallel * 2:
                    futures.pop(0).result()
        if group:
            futures.append(pool.submit(send, group))
        for future in futures:
            future.result()
    return sent


def timed(client: httpx.Client, url: str, accept: str | None = None, n: int = 20) -> list[float]:
    headers = {"Accept": accept} if accept else {}
    times = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.get(url, headers=headers)
        r.read()
        times.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    return times


def download(url: str, accept: str = STUDY_ACCEPT) -> tuple[int, float]:
    """(bytes, seconds) for a whole-study GET. curl when installed: a Python client tops
    out near 300 MB/s on this kind of machine and would measure itself, not the server."""
    if shutil.which("curl"):
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-H",
                f"Accept: {accept}",
                "-w",
                "%{size_download} %{time_total} %{http_code}",
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if out[2] != "200":
            raise RuntimeError(f"{url[:120]}...: HTTP {out[2]}")
        return int(out[0]), float(out[1])
    start = time.perf_counter()
    received = 0
    with httpx.stream("GET", url, headers={"Accept": accept}, timeout=600) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url[:120]}...: HTTP {r.status_code}")
        for chunk in r.iter_raw(1024 * 1024):
            received += len(chunk)
    return received, time.perf_counter() - start


def total_rss(pid: int) -> int:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def measure(server, data: dict, big_mb: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    root = server.dicomweb
    figures: dict[str, float] = {}
    study, ct_series, cts = data["study"], data["ct_series"], data["ct_uids"]
    with httpx.Client(timeout=600) as client:
        series_url = f"{root}/studies/{data['meta_study']}/series/{data['meta_series']}/metadata"
        timed(client, series_url, n=2)
        figures["series metadata, 1,000 instances (ms, median)"] = statistics.median(
            timed(client, series_url, n=10)
        )
        figures["study metadata (ms, median)"] = statistics.median(
            timed(client, f"{root}/studies/{study}/metadata", n=10)
        )
        frame_urls = [
            f"{root}/studies/{study}/series/{ct_series}/instances/{uid}/frames/1" for uid in cts
        ]
        timed(client, frame_urls[0], OHIF_FRAME_ACCEPT, n=5)
        times = []
        for index in range(300):
            times += timed(client, frame_urls[index % len(frame_urls)], OHIF_FRAME_ACCEPT, n=1)
        figures["native frame 512x512 p50 (ms)"] = percentile(times, 50)
        figures["native frame 512x512 p90 (ms)"] = percentile(times, 90)
        j2k_url = (
            f"{root}/studies/{study}/series/{data['j2k_series']}/instances/"
            f"{data['j2k_uids'][0]}/frames/1"
        )
        try:
            timed(client, j2k_url, UNCOMPRESSED_FRAME_ACCEPT, n=2)
            figures["J2K frame -> uncompressed (ms, median)"] = statistics.median(
                timed(client, j2k_url, UNCOMPRESSED_FRAME_ACCEPT, n=10)
            )
        except RuntimeError as exc:
            print(f"  {server.name}: J2K transcoding failed: {str(exc)[-120:]}")
        rendered_url = f"{root}/studies/{study}/series/{ct_series}/instances/{cts[0]}/rendered"
        try:
            timed(client, rendered_url, "image/jpeg", n=2)
            figures["rendered JPEG 512x512 (ms, median)"] = statistics.median(
                timed(client, rendered_url, "image/jpeg", n=10)
            )
        except RuntimeError as exc:
            print(f"  {server.name}: rendered failed: {str(exc)[-120:]}")

        all_frames = ",".join(str(n) for n in range(1, 2001))
        long_url = (
            f"{root}/studies/{study}/series/{data['long_series']}/instances/"
            f"{data['long_uid']}/frames/{all_frames}"
        )
        try:
            long_times = [download(long_url, OHIF_FRAME_ACCEPT)[1] * 1000 for _ in range(3)]
            figures["all 2,000 frames of one instance, one request (ms)"] = statistics.median(
                long_times
            )
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"  {server.name}: 2,000 frames failed: {exc}")

    # 25 frame requests in flight, as OHIF does.
    def fetch(url: str) -> None:
        r = pool_client.get(url, headers={"Accept": OHIF_FRAME_ACCEPT})
        if r.status_code != 200:
            raise RuntimeError(r.text[:200])

    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=25)) as pool_client:
        with ThreadPoolExecutor(25) as pool:
            urls = [frame_urls[i % len(frame_urls)] for i in range(500)]
            start = time.perf_counter()
            list(pool.map(fetch, urls))
            figures["native frames, 25 in flight (frames/s)"] = len(urls) / (
                time.perf_counter() - start
            )

    big_url = f"{root}/studies/{data['big_study']}"
    sampler = RssSampler(server.pid)
    # common.RssSampler's baseline counts only the supervisor; its peak counts the HTTP
    # workers too: measure the baseline the same way as the peak.
    sampler.baseline = total_rss(server.pid)
    with sampler:
        speeds = []
        for _ in range(3):
            received, elapsed = download(big_url)
            speeds.append(received / 1e6 / elapsed)
    figures[f"whole study {big_mb} MB (MB/s, median of 3)"] = statistics.median(speeds)
    figures["RSS growth while streaming it (MB)"] = (sampler.peak - sampler.baseline) / 1e6
    return figures


def build(ct_count: int, big_mb: int) -> tuple[dict, list[bytes], object, object]:
    spec = StudySpec(patient_name="BENCH^WADO", patient_id="BW-1")
    ct_series, j2k_series = generate_uid(), generate_uid()
    cts = [ct_image(spec, ct_series, n, seed=n) for n in range(1, ct_count + 1)]
    j2ks = [j2k_mr(spec, j2k_series, n) for n in range(1, 11)]
    cine = rgb_cine(spec, generate_uid(), frames=30, size=256)
    long_series = generate_uid()
    long_cine = rgb_cine(spec, long_series, frames=2000, size=128)
    main = cts + j2ks + [cine, long_cine]
    meta_spec = StudySpec(patient_name="BENCH^META", patient_id="BW-2")
    meta_series = generate_uid()
    small = ct_image(meta_spec, meta_series, 1, 64, 64)
    big_spec = StudySpec(patient_name="BENCH^BIG", patient_id="BW-3")
    template = ct_image(big_spec, generate_uid(), 1)
    big_count = max(1, big_mb * 1024 * 1024 // len(template))
    data = {
        "study": spec.study_instance_uid,
        "ct_series": ct_series,
        "ct_uids": [
            pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True).SOPInstanceUID for b in cts
        ],
        "j2k_series": j2k_series,
        "j2k_uids": [
            pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True).SOPInstanceUID for b in j2ks
        ],
        "long_series": long_series,
        "long_uid": pydicom.dcmread(io.BytesIO(long_cine), stop_before_pixels=True).SOPInstanceUID,
        "meta_study": meta_spec.study_instance_uid,
        "meta_series": meta_series,
        "big_study": big_spec.study_instance_uid,
    }

    def meta_instances():  # type: ignore[no-untyped-def]
        return fast_copies(small, 1000, meta_spec.study_instance_uid, meta_series)

    def big_instances():  # type: ignore[no-untyped-def]
        return fast_copies(template, big_count, big_spec.study_instance_uid, generate_uid())

    return data, main, meta_instances, big_instances


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ct", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=2048)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    print("generating data...", flush=True)
    data, main_study, meta_instances, big_instances = build(args.ct, args.big_mb)
    servers = []
    results: dict[str, dict[str, float]] = {}
    try:
        servers.append(start_tessera(args.database))
        if not args.no_orthanc and orthanc_available():
            servers.append(start_orthanc())
        for server in servers:
            start = time.perf_counter()
            stow(server.dicomweb, main_study)
            stow(server.dicomweb, meta_instances(), batch=100)
            sent = stow(server.dicomweb, big_instances())
            print(
                f"{server.name}: stored ({sent / 1e6:.0f} MB big study) in "
                f"{time.perf_counter() - start:.1f} s",
                flush=True,
            )
            results[server.name] = measure(server, data, args.big_mb)
    finally:
        for server in servers:
            server.stop()
    names = list(results)
    keys = list(results[names[0]])
    print()
    print(
        f"{'figure':48s}"
        + "".join(f"{n:>18s}" for n in names)
        + ("     ratio" if len(names) > 1 else "")
    )
    for key in keys:
        row = f"{key:48s}" + "".join(f"{results[n].get(key, float('nan')):18.2f}" for n in names)
        if len(names) > 1 and key in results[names[1]]:
            a, b = results[names[0]][key], results[names[1]][key]
            higher_is_better = "/s" in key
            ratio = (a / b) if higher_is_better else (b / a if a else float("nan"))
            if "RSS" in key:
                ratio = b / a if a > 0 else float("nan")
            row += f"{ratio:10.2f}x"
        print(row)
    if len(names) > 1:
        print(
            "ratio: how many times better Tessera is than Orthanc on that figure (> 1 = Tessera ahead)"
        )


if __name__ == "__main__":
    main()
