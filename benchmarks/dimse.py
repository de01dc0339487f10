"""DIMSE benchmark: Tessera's gateway against Orthanc, in the same run, with dcmtk's tools.

- C-STORE throughput: one `storescu` association sending N uncompressed CT slices (512x512,
  16 bit), instances/s;
- C-FIND study latency: `findscu` of one study by Study Instance UID, including the process
  start, median and p95 over R runs;
- C-MOVE throughput: `movescu` of the N-instance study to a `storescp` the benchmark starts,
  instances/s.

    python benchmarks/dimse.py [--instances 500] [--finds 20] [--database sqlite|postgresql]
                               [--no-orthanc] [--locked]

--locked registers the benchmark's AE as a peer that may query only the source `default` (the
one every stored instance carries): the source-locked query path (per-source study and series
rows), same data and same answers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    free_port,
    median,
    orthanc_available,
    percentile,
    start_orthanc,
    start_tessera,
    wait_port,
)

from tessera.synthetic import StudySpec, ct_image  # noqa: E402

DCMTK = Path("/usr/bin")
BENCH_AET = "BENCHSCU"
DESTINATION_AET = "BENCHDEST"


def tool(name: str) -> str:
    # dcmtk's binaries, not the pynetdicom apps that share their names on PATH.
    return str(DCMTK / name)


def generate(folder: Path, count: int) -> str:
    """`count` CT slices of one study (one series) as files; returns the Study UID."""
    folder.mkdir(parents=True, exist_ok=True)
    study = StudySpec(patient_name="BENCH^DIMSE", patient_id="BENCH-1")
    series = generate_uid()
    for number in range(count):
        (folder / f"{number:05d}.dcm").write_bytes(ct_image(study, series, number, seed=number))
    return study.study_instance_uid


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}... failed:\n{result.stdout}{result.stderr}")
    return elapsed


def measure(
    name: str,
    port: int,
    called: str,
    files: list[Path],
    study_uid: str,
    finds: int,
    received: Path,
    destination_port: int,
) -> dict[str, float]:
    figures: dict[str, float] = {}
    seconds = timed(
        [
            tool("storescu"),
            "-aet",
            BENCH_AET,
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ]
    )
    figures["store_per_s"] = len(files) / seconds
    print(
        f"  {name}: C-STORE {len(files)} instances in {seconds:.2f} s "
        f"= {figures['store_per_s']:.1f} instances/s",
        flush=True,
    )

    latencies = []
    for _ in range(finds):
        latencies.append(
            timed(
                [
                    tool("findscu"),
                    "-S",
                    "-aet",
                    BENCH_AET,
                    "-aec",
                    called,
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={study_uid}",
                    "-k",
                    "PatientName",
                    "-k",
                    "StudyDate",
                    "-k",
                    "NumberOfStudyRelatedInstances",
                    "127.0.0.1",
                    str(port),
                ]
            )
            * 1000
        )
    figures["find_median_ms"] = median(latencies)
    figures["find_p95_ms"] = percentile(latencies, 95)
    print(
        f"  {name}: C-FIND study median {figures['find_median_ms']:.1f} ms, "
        f"p95 {figures['find_p95_ms']:.1f} ms (incl. findscu start)",
        flush=True,
    )

    storescp = subprocess.Popen(
        [tool("storescp"), "-aet", DESTINATION_AET, "-od", str(received), str(destination_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(destination_port)
        seconds = timed(
            [
                tool("movescu"),
                "-S",
                "-aet",
                BENCH_AET,
                "-aec",
                called,
                "-aem",
                DESTINATION_AET,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study_uid}",
                "127.0.0.1",
                str(port),
            ]
        )
    finally:
        storescp.terminate()
        storescp.wait(10)
    moved = len(list(received.iterdir()))
    figures["move_per_s"] = moved / seconds
    print(
        f"  {name}: C-MOVE {moved} instances in {seconds:.2f} s "
        f"= {figures['move_per_s']:.1f} instances/s",
        flush=True,
    )
    return figures


def run_tessera(args, files, study_uid, workdir: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    port, destination_port = free_port(), free_port()
    data_dir = workdir / "tessera-data"
    env = {
        "TESSERA_DATA_DIR": str(data_dir),
        "TESSERA_DIMSE_PORT": str(port),
    }
    server = start_tessera(args.database, extra_env=env)
    try:
        wait_port(port)
        # Register the benchmark's AEs through the real command line.
        cli_env = dict(os.environ, **env)
        if args.database == "postgresql":
            cli_env["TESSERA_DATABASE_URL"] = server_env_url(server)
        for title, peer_port in ((BENCH_AET, 0), (DESTINATION_AET, destination_port)):
            locked = ["--query-sources", "default"] if args.locked and title == BENCH_AET else []
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tessera.cli",
                    "peers",
                    "add",
                    title,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(peer_port),
                    *locked,
                ],
                env=cli_env,
                check=True,
                capture_output=True,
            )
        received = workdir / "tessera-received"
        received.mkdir()
        return measure(
            server.name, port, "TESSERA", files, study_uid, args.finds, received, destination_port
        )
    finally:
        server.stop()


def server_env_url(server) -> str:  # type: ignore[no-untyped-def]
    # start_tessera made a fresh PostgreSQL database and passed it in the environment.
    with open(f"/proc/{server.pid}/environ", "rb") as fh:
        for item in fh.read().split(b"\0"):
            if item.startswith(b"TESSERA_DATABASE_URL="):
                return item.split(b"=", 1)[1].decode()
    raise RuntimeError("database URL of the server not found")


def run_orthanc(args, files, study_uid, workdir: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    destination_port = free_port()
    server = start_orthanc(
        {
            "DicomAet": "ORTHANC",
            "DicomModalities": {
                "bench": [BENCH_AET, "127.0.0.1", 104],  # never called back
                "dest": [DESTINATION_AET, "127.0.0.1", destination_port],
            },
            "DicomCheckModalityHost": False,
        }
    )
    try:
        wait_port(server.dicom_port)
        received = workdir / "orthanc-received"
        received.mkdir()
        return measure(
            "orthanc",
            server.dicom_port,
            "ORTHANC",
            files,
            study_uid,
            args.finds,
            received,
            destination_port,
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--finds", type=int, default=20)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument(
        "--locked", action="store_true", help="query as a peer locked to one source (see above)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dimse-bench-"))
    try:
        study_uid = generate(workdir / "files", args.instances)
        files = sorted((workdir / "files").iterdir())
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{len(files)} CT instances, {size_mb:.0f} MB, one study", flush=True)
        tessera = run_tessera(args, files, study_uid, workdir)
        if args.no_orthanc or not orthanc_available():
            return
        orthanc = run_orthanc(args, files, study_uid, workdir)
        print("Tessera / Orthanc:")
        print(f"  C-STORE throughput  {tessera['store_per_s'] / orthanc['store_per_s']:.2f}x")
        print(
            f"  C-FIND latency      {tessera['find_median_ms'] / orthanc['find_median_ms']:.2f}x"
            " (lower is better)"
        )
        print(f"  C-MOVE throughput   {tessera['move_per_s'] / orthanc['move_per_s']:.2f}x")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
