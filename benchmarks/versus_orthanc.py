"""Tessera and Orthanc (with its DICOMweb plugin, Debian's `orthanc orthanc-dicomweb`) side
by side: the same generated data stored in both in the same run, every figure measured the
same way on both, and the ratio.

Figures: STOW-RS instances/s (4 clients); QIDO-RS study search (OHIF's study list query and
a PatientID search) and series listing; series and study metadata; a native frame; a frame
transcoded from JPEG 2000; a rendered frame; whole-study retrieval MB/s; C-STORE instances/s
(dcmtk storescu); C-FIND latency (one association, study level); C-MOVE throughput (dcmtk
movescu receiving the study itself).

The WADO-RS figures come from benchmarks/wado_retrieve.py and the STOW-RS ones from
benchmarks/stow_ingest.py, so every benchmark measures a figure the same way.

    python benchmarks/versus_orthanc.py [--stow 200] [--studies 500] [--ct 50] [--big-mb 256]
        [--dimse 100]

Ratio: how many times better Tessera is than Orthanc on that figure (> 1 = Tessera ahead).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, free_port, orthanc_available, start_orthanc, start_tessera  # noqa: E402
from stow_ingest import generate, run_ingest  # noqa: E402
from wado_retrieve import build, measure, stow  # noqa: E402

from tessera.synthetic import StudySpec, ct_image  # noqa: E402

DCMTK = Path("/usr/bin")
SCU_AET = "BENCHSCU"
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


def qido_figures(server: Server, data: dict, studies: int) -> dict[str, float]:
    root = server.dicomweb
    searches = {
        "QIDO study list, OHIF's query (ms, median)": (f"{root}/studies", OHIF_STUDY_LIST),
        "QIDO study search by PatientID (ms, median)": (
            f"{root}/studies",
            {"PatientID": f"S{studies // 2:05d}", **OHIF_STUDY_LIST},
        ),
        "QIDO series listing of a study (ms, median)": (
            f"{root}/studies/{data['study']}/series",
            {"includefield": "00080021,00080031,0008103E,00200011"},
        ),
    }
    figures = {}
    with httpx.Client(timeout=60) as client:
        for name, (url, params) in searches.items():
            times = []
            for attempt in range(12):
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
    return figures


def write_files(instances: list[bytes], folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(instances):
        (folder / f"{index:06d}.dcm").write_bytes(data)
    return sum(len(d) for d in instances)


def cstore_rate(port: int, aet: str, folder: Path, count: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(DCMTK / "storescu"), "-aet", SCU_AET, "-aec", aet, "+sd", "+r", "-nh",
         "127.0.0.1", str(port), str(folder)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"storescu: {done.stderr[-500:]}")
    return count / elapsed


def cfind_latency(port: int, aet: str, study_uid: str) -> float:
    """Median ms of a study-level C-FIND by StudyInstanceUID, 30 on one association."""
    ae = AE(ae_title=SCU_AET)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        raise RuntimeError("C-FIND association refused")
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    identifier.PatientName = ""
    identifier.StudyDate = ""
    identifier.ModalitiesInStudy = ""
    times = []
    try:
        for _ in range(32):
            start = time.perf_counter()
            results = [
                status
                for status, _ in assoc.send_c_find(
                    identifier, StudyRootQueryRetrieveInformationModelFind
                )
            ]
            times.append((time.perf_counter() - start) * 1000)
            if not results or results[-1].Status != 0:
                raise RuntimeError(f"C-FIND failed: {results[-1] if results else 'no answer'}")
    finally:
        assoc.release()
    return statistics.median(times[2:])


def cmove_rate(
    port: int, aet: str, study_uid: str, move_port: int, megabytes: float, count: int
) -> tuple[float, float]:
    """movescu asks for the study to be sent to itself (it listens on move_port)."""
    out = Path(tempfile.mkdtemp(prefix="bench-move-"))
    try:
        start = time.perf_counter()
        done = subprocess.run(
            [str(DCMTK / "movescu"), "-S", "-aet", SCU_AET, "-aem", SCU_AET, "-aec", aet,
             "+P", str(move_port), "+xa", "-od", str(out),
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
             "127.0.0.1", str(port)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        received = len(list(out.iterdir()))
        if done.returncode != 0 or received != count:
            raise RuntimeError(f"movescu got {received}/{count}: {done.stderr[-500:]}")
        return count / elapsed, megabytes / elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


def register_tessera_peer(data_dir: Path, database_env: dict[str, str], move_port: int) -> None:
    env = {**os.environ, **database_env, "TESSERA_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "peers", "add", SCU_AET,
         "--host", "127.0.0.1", "--port", str(move_port)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"tessera peers add: {done.stderr}")


def register_orthanc_peer(server: Server, move_port: int) -> None:
    rest = server.dicomweb.rsplit("/dicom-web", 1)[0]
    response = httpx.put(
        f"{rest}/modalities/{SCU_AET.lower()}",
        json={"AET": SCU_AET, "Host": "127.0.0.1", "Port": move_port},
    )
    response.raise_for_status()


def orthanc_dimse_port(server: Server) -> int:
    rest = server.dicomweb.rsplit("/dicom-web", 1)[0]
    return int(httpx.get(f"{rest}/system").json()["DicomPort"])


def run_one(kind: str, args: argparse.Namespace, inputs: dict) -> dict[str, float]:
    move_port = free_port()
    figures: dict[str, float] = {}
    if kind == "tessera":
        data_dir = Path(tempfile.mkdtemp(prefix="tessera-versus-"))
        dimse_port = free_port()
        env = {"TESSERA_DATA_DIR": str(data_dir / "data"), "TESSERA_DIMSE_PORT": str(dimse_port)}
        server = start_tessera("sqlite", extra_env=env)
        server.cleanup.append(lambda: shutil.rmtree(data_dir, ignore_errors=True))
        register_tessera_peer(data_dir / "data", {}, move_port)
        aet = "TESSERA"
    else:
        server = start_orthanc()
        dimse_port = orthanc_dimse_port(server)
        register_orthanc_peer(server, move_port)
        aet = "ORTHANC"
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
        figures["C-STORE, storescu (instances/s)"] = cstore_rate(
            dimse_port, aet, inputs["dimse_folder"], args.dimse
        )
        figures["C-FIND study level (ms, median)"] = cfind_latency(
            dimse_port, aet, inputs["dimse_study"]
        )
        per_s, mb_s = cmove_rate(
            dimse_port, aet, inputs["dimse_study"], move_port, inputs["dimse_mb"], args.dimse
        )
        figures["C-MOVE study (instances/s)"] = per_s
        figures["C-MOVE study (MB/s)"] = mb_s
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stow", type=int, default=200, help="instances for STOW-RS rate")
    parser.add_argument("--studies", type=int, default=500, help="studies to search")
    parser.add_argument("--ct", type=int, default=50, help="CT slices in the main study")
    parser.add_argument("--big-mb", type=int, default=256, help="whole-study retrieval size")
    parser.add_argument("--dimse", type=int, default=100, help="instances for C-STORE/C-MOVE")
    args = parser.parse_args()
    if not orthanc_available():
        sys.exit("Orthanc is not installed: apt-get install -y orthanc orthanc-dicomweb")

    print("generating data...", flush=True)
    data, main_study, meta_instances, big_instances = build(args.ct, args.big_mb)
    dimse_spec = StudySpec(patient_name="BENCH^DIMSE", patient_id="BD-1")
    dimse_series = generate_uid()
    dimse_instances = [
        ct_image(dimse_spec, dimse_series, n, seed=n) for n in range(1, args.dimse + 1)
    ]
    workdir = Path(tempfile.mkdtemp(prefix="versus-"))
    inputs = {
        "data": data,
        "main_study": main_study,
        "meta_instances": meta_instances,
        "big_instances": big_instances,
        "searchable": many_studies(args.studies),
        "dimse_folder": workdir / "dimse",
        "dimse_study": dimse_spec.study_instance_uid,
        "dimse_mb": write_files(dimse_instances, workdir / "dimse") / 1e6,
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for kind in ("tessera", "orthanc"):
            # Fresh STOW instances (distinct UIDs) for each server, same sizes.
            inputs["stow"] = generate(args.stow)
            print(f"{kind}: measuring...", flush=True)
            results[kind] = run_one(kind, args, inputs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)


def print_table(results: dict[str, dict[str, float]]) -> None:
    tessera, orthanc = results["tessera"], results["orthanc"]
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


if __name__ == "__main__":
    main()
