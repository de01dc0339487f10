"""Tessera and Orthanc (with its DICOMweb plugin, Debian's `orthanc orthanc-dicomweb`) side
by side: the same generated data stored in both in the same run, every figure measured the
same way on both, and the ratio.

Figures: STOW-RS instances/s (4 clients); QIDO-RS study search (OHIF's study list query and
a PatientID search) and series listing; series and study metadata; a native frame; a frame
transcoded from JPEG 2000; a rendered frame; whole-study retrieval MB/s; C-STORE instances/s
(dcmtk storescu); C-FIND latency (dcmtk findscu, process start included); C-MOVE throughput
(dcmtk movescu to a storescp).

The WADO-RS figures are measured by benchmarks/wado_retrieve.py's functions, the STOW-RS ones
by benchmarks/stow_ingest.py's and the DIMSE ones by benchmarks/dimse.py's, so a figure is
measured the same way in every benchmark.

    python benchmarks/versus_orthanc.py [--stow 200] [--studies 500] [--ct 50] [--big-mb 256]
        [--dimse 100] [--finds 20]

Ratio: how many times better Tessera is than Orthanc on that figure (> 1 = Tessera ahead).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dimse  # noqa: E402
from common import Server, orthanc_available, start_orthanc, start_tessera  # noqa: E402
from stow_ingest import generate, run_ingest  # noqa: E402
from wado_retrieve import build, measure, stow  # noqa: E402

from tessera.synthetic import StudySpec, ct_image  # noqa: E402

OHIF_STUDY_LIST = {
    "limit": "101",
    "offset": "0",
    "fuzzymatching": "false",
    "includefield": "00081030,00080060,00080090,00100030",
}


def many_studies(count: int) -> list[bytes]:
    """`count` one-instance studies (small CT), each its own patient: a study list to search."""
    template = pydicom.dcmread(io.BytesIO(ct_image(StudySpec(), generate_uid(), 1, 16, 16)))
    out = []
    for number in range(count):
        template.StudyInstanceUID = generate_uid()
        template.SeriesInstanceUID = generate_uid()
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.PatientName = f"SEARCH^P{number:05d}"
        template.PatientID = f"S{number:05d}"
        template.AccessionNumber = f"A{number:05d}"
        buffer = io.BytesIO()
        template.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def qido_figures(server: Server, data: dict, studies: int) -> dict:
    root = server.dicomweb
    searches = {
        "QIDO study list, OHIF's query (ms, median)": (f"{root}/studies", OHIF_STUDY_LIST),
        "QIDO study search by PatientID (ms, median)": (
            f"{root}/studies",
            {"PatientID": f"S{studies // 2:05d}", **OHIF_STUDY_LIST},
        ),
        # Issue 12's "small search": a name prefix matching a few studies (10 of them).
        "QIDO study search PatientName=SEARCH^P0001* (ms, median)": (
            f"{root}/studies",
            {"PatientName": "SEARCH^P0001*", **OHIF_STUDY_LIST},
        ),
        "QIDO series listing of a study (ms, median)": (
            f"{root}/studies/{data['study']}/series",
            {"includefield": "00080021,00080031,0008103E,00200011"},
        ),
    }
    figures: dict = {"found": {}}  # how many results each search answered
    with httpx.Client(timeout=60) as client:
        for name, (url, params) in searches.items():
            times = []
            for attempt in range(52):
                start = time.perf_counter()
                response = client.get(
                    url, params=params, headers={"Accept": "application/dicom+json"}
                )
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{server.name} {url}: {response.status_code}")
                if attempt >= 2:  # the first two warm caches on both servers
                    times.append(elapsed)
            figures[name] = statistics.median(times)
            figures["found"][name] = len(response.json())
    return figures


def dicomweb_figures(kind: str, args: argparse.Namespace, inputs: dict) -> dict:
    server = start_tessera("sqlite") if kind == "tessera" else start_orthanc()
    figures: dict = {}
    try:
        rate, _, failed = run_ingest(server.dicomweb, inputs["stow"], 4)
        if failed:
            print(f"  {server.name}: {failed} STOW requests failed")
        figures["STOW-RS, 4 clients (instances/s)"] = rate
        stow(server.dicomweb, inputs["searchable"], batch=100)
        stow(server.dicomweb, inputs["main_study"])
        stow(server.dicomweb, inputs["meta_instances"](), batch=100)
        stow(server.dicomweb, inputs["big_instances"]())
        figures.update(qido_figures(server, inputs["data"], args.studies))
        figures.update(measure(server, inputs["data"], args.big_mb))
    finally:
        server.stop()
    return figures


def dimse_figures(kind: str, args: argparse.Namespace, inputs: dict) -> dict[str, float]:
    """benchmarks/dimse.py's measurements: storescu, findscu (process start included),
    movescu to a storescp."""
    dimse_args = argparse.Namespace(database="sqlite", finds=args.finds, locked=False)
    workdir = Path(tempfile.mkdtemp(prefix=f"versus-{kind}-"))
    try:
        run = dimse.run_tessera if kind == "tessera" else dimse.run_orthanc
        raw = run(dimse_args, inputs["dimse_files"], inputs["dimse_study"], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "C-STORE, storescu (instances/s)": raw["store_per_s"],
        "C-FIND study, findscu incl. start (ms, median)": raw["find_median_ms"],
        "C-MOVE study to storescp (instances/s)": raw["move_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stow", type=int, default=200, help="instances for STOW-RS rate")
    parser.add_argument("--studies", type=int, default=500, help="studies to search")
    parser.add_argument("--ct", type=int, default=50, help="CT slices in the main study")
    parser.add_argument("--big-mb", type=int, default=256, help="whole-study retrieval size")
    parser.add_argument("--dimse", type=int, default=100, help="instances for C-STORE/C-MOVE")
    parser.add_argument("--finds", type=int, default=20, help="C-FIND repetitions")
    args = parser.parse_args()
    if not orthanc_available():
        sys.exit("Orthanc is not installed: apt-get install -y orthanc orthanc-dicomweb")

    print("generating data...", flush=True)
    data, main_study, meta_instances, big_instances = build(args.ct, args.big_mb)
    workdir = Path(tempfile.mkdtemp(prefix="versus-"))
    dimse_study = dimse.generate(workdir / "dimse", args.dimse)
    inputs = {
        "data": data,
        "main_study": main_study,
        "meta_instances": meta_instances,
        "big_instances": big_instances,
        "searchable": many_studies(args.studies),
        "dimse_files": sorted((workdir / "dimse").iterdir()),
        "dimse_study": dimse_study,
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for kind in ("tessera", "orthanc"):
            # Fresh STOW instances (distinct UIDs) for each server, same sizes.
            inputs["stow"] = generate(args.stow)
            print(f"{kind}: measuring...", flush=True)
            results[kind] = dicomweb_figures(kind, args, inputs)
            results[kind].update(dimse_figures(kind, args, inputs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)


def print_table(results: dict[str, dict[str, float]]) -> None:
    tessera, orthanc = dict(results["tessera"]), dict(results["orthanc"])
    found = tessera.pop("found", {}), orthanc.pop("found", {})
    print("\n| Figure | Tessera | Orthanc | Ratio |\n| --- | ---: | ---: | ---: |")
    for key in tessera:
        a, b = tessera[key], orthanc.get(key, float("nan"))
        higher_is_better = "/s" in key
        if "RSS" in key or not higher_is_better:
            ratio = b / a if a else float("nan")
        else:
            ratio = a / b if b else float("nan")
        print(f"| {key} | {a:.2f} | {b:.2f} | {ratio:.2f}x |")
    print("\nRatio: how many times better Tessera is than Orthanc (> 1 = Tessera ahead).")
    # A search is compared only if both servers found the same studies.
    for key, count in found[0].items():
        if found[1].get(key) != count:
            print(f"Not comparable: {key}: Tessera found {count}, Orthanc {found[1].get(key)}.")


if __name__ == "__main__":
    main()
