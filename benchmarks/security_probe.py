"""Counts the defects of issue 20 on a running Tessera, over HTTP and DIMSE only.

Starts `tessera serve` from a checkout (this one by default) on a fresh SQLite data folder,
free ports and anonymous access off, bootstraps the system administrator with
`tessera admin bootstrap` (the documented way, on the index), sets the rest up through the
admin API, then counts:

- 20.1 privilege escalation: what default-tenant admins without the system flag (a plain
  `admin`, an admin locked to one source, a custom role holding only `admin` and `read`) get
  done against users, roles, API keys and DIMSE peers that hold more than they do, and whether
  any credential they mint reaches `GET /api/v1/tenants` (the `system` permission);
- 20.2 hidden-source values: two studies mixing two sources (each order of upload), users and
  DIMSE peers locked to one source; QIDO-RS and C-FIND answers that show, or searches that
  match on, a value only the hidden source wrote;
- 20.3 the issue's bad requests (empty UID lists, an offset past 2^63-1, a STOW-RS whose middle
  part of three has Columns (0028,0011) as VR UL with 2 bytes or VR XX): 5xx answers, and
  whether the good parts are acknowledged and stored;
- 20.4 kept-alive connections broken by an error answer (http.client, one connection per pair);
- a seeded fuzz (random QIDO query strings, mutated STOW-RS parts): 5xx, and whether the server
  still answers afterwards.

Each count is of answers (one HTTP response or one C-FIND request), not of distinct bugs; the
details above the table name every request that counted. 20.1 runs last: on a version with
the defect it takes the system administrator over (and deletes it). A request that meets a
connection the server dropped after an earlier answer is counted (the "resets" row) and sent
once more on a new connection, so the later sections still measure what they measure.

It imports nothing of Tessera, so the same script measures any version (about 10 s):

    python benchmarks/security_probe.py                           # this checkout
    python benchmarks/security_probe.py --checkout /path/to/other/worktree --json out.json

The server is stopped afterwards; its log and data are kept with --keep.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, wait_port  # noqa: E402  (benchmarks/common imports no Tessera)

PASSWORD = "probe-password-20"
NEW_PASSWORD = "taken-over-20"
SERVER_AET = "TESSERA"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SEED = 20
# The values each source writes; every string holds the source's token, so a token in an
# answer to a caller who cannot see that source is a leak.
TOKEN = {"ClinicA": "ALFA", "ClinicB": "BRAVO"}
OTHER = {"ClinicA": "ClinicB", "ClinicB": "ClinicA"}


def source_values(source: str) -> dict[str, str]:
    t = TOKEN[source]
    return {
        "PatientName": f"{t}^PATIENT",
        "PatientID": f"PID-{t}",
        "AccessionNumber": f"ACC-{t}",
        "ReferringPhysicianName": f"REF^{t}",
        "StudyDescription": f"STUDY {t}",
        "SeriesDescription": f"SERIES {t}",
        "StudyID": f"ID{t}"[:16],
    }


# --- DICOM bytes ---------------------------------------------------------------------------


def ct_instance(
    study: str, series: str, sop: str, number: int, values: dict[str, str] | None = None
) -> bytes:
    """A small CT image as a Part 10 file in explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "CT"
    ds.PatientName = "PROBE^PATIENT"
    ds.PatientID = "PROBE-PID"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "PROBE-ACC"
    ds.ReferringPhysicianName = "PROBE^REFERRER"
    ds.StudyDescription = "PROBE STUDY"
    ds.SeriesDescription = "PROBE SERIES"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    for keyword, value in (values or {}).items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(128))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


COLUMNS_US = b"\x28\x00\x11\x00US\x02\x00"


def with_columns_vr(data: bytes, vr: bytes) -> bytes:
    """Columns (0028,0011) re-sent with another 2-byte-length VR, its 2-byte value kept."""
    assert data.count(COLUMNS_US) == 1
    return data.replace(COLUMNS_US, b"\x28\x00\x11\x00" + vr + b"\x02\x00")


LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}


def split_part10(data: bytes) -> tuple[bytes, bytes, list[int]]:
    """(preamble + meta, data set, offsets of the data set's top-level elements)."""
    group_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL, after DICM
    start = 144 + group_length
    body = data[start:]
    offsets, at = [], 0
    while at + 8 <= len(body):
        offsets.append(at)
        vr = body[at + 4 : at + 6]
        if vr in LONG_VRS:
            at += 12 + int.from_bytes(body[at + 8 : at + 12], "little")
        else:
            at += 8 + int.from_bytes(body[at + 6 : at + 8], "little")
    return data[:start], body, offsets


def multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = f"probe-{random.getrandbits(64):016x}"
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type


def sop_uid_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def seq_uids(body: dict, tag: str) -> list[str]:
    return [
        item.get("00081155", {}).get("Value", [""])[0]
        for item in body.get(tag, {}).get("Value", []) or []
    ]


def find_query(
    level: str, match: bool, expect: bool = True, **keys: str
) -> tuple[str, str, Dataset, bool, bool]:
    """A C-FIND identifier: (level, keys as text, data set, is a search on a hidden value,
    should find something)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return level, " ".join(f"{k}={v}" for k, v in keys.items()), ds, match, expect and not match


# --- the server ----------------------------------------------------------------------------


@dataclass
class Server:
    """`tessera serve` run from a checkout, in its own process group."""

    checkout: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    dimse_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(self.checkout),
            TESSERA_DATA_DIR=str(self.workdir / "data"),
            TESSERA_ANONYMOUS="off",
            TESSERA_WORKERS="1",
            TESSERA_LOG_FORMAT="text",
        )
        env.pop("TESSERA_DATABASE_URL", None)  # SQLite in the data folder
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tessera.cli", *args],
            cwd=self.checkout,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tessera {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self, timeout: float = 120) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 (the child holds it)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tessera.cli", "serve", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--dimse-port", str(self.dimse_port)]
            + ["--dimse-aet", SERVER_AET],
            cwd=self.checkout,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early, see {self.workdir / 'server.log'}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"server did not start, see {self.workdir / 'server.log'}")
        # The DIMSE listener opens beside HTTP.
        wait_port(self.dimse_port, max(1.0, deadline - time.time()))

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # our child's own group
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def tracebacks(self) -> int:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace").count("Traceback") if path.exists() else 0


# --- the probe -----------------------------------------------------------------------------


@dataclass
class Row:
    item: str
    what: str
    count: int
    of: int | None = None
    note: str = ""


class Client:
    """httpx.Client whose request, on a kept-alive connection the server has dropped (issue
    20.4: a reset on the next request), is counted and sent once more on a new connection."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.inner = httpx.Client(timeout=120, event_hooks={"response": [probe._record]})

    def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            return self.inner.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            self.probe.resets.append(f"[{self.probe.section}] {method} {url}: {exc!r}")
            return self.inner.request(method, url, **kwargs)  # type: ignore[arg-type]

    def get(self, url: str, **kwargs: object) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: object) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: object) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: object) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)


class Probe:
    def __init__(self, base: str, dimse_port: int, root_key: str, root_key_id: int | None):
        self.base = base
        self.api = f"{base}/api/v1"
        self.root = f"{base}/dicomweb"
        self.dimse_port = dimse_port
        self.keys: dict[str, str] = {"admin": root_key}
        self.root_key_id = root_key_id
        self.section = "setup"
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.server_errors: list[str] = []
        self.resets: list[str] = []
        self.client = Client(self)
        self.rows: list[Row] = []
        self.details: dict[str, list] = {}
        self.studies: dict[str, dict] = {}  # first source -> {"study", "series": [...]}

    def _record(self, response: httpx.Response) -> None:
        self.statuses[(self.section, response.status_code)] += 1
        if response.status_code >= 500:
            request = response.request
            self.server_errors.append(
                f"[{self.section}] {request.method} {request.url} -> {response.status_code}"
            )

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}

    def ok(self, response: httpx.Response) -> dict | list:
        if response.status_code >= 300:
            raise RuntimeError(
                f"set-up {response.request.method} {response.request.url}: "
                f"{response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else {}

    def stow(self, user: str, parts: list[bytes], source: str | None = None) -> httpx.Response:
        body, content_type = multipart(parts)
        return self.client.post(
            f"{self.root}/studies",
            params={"source": source} if source else None,
            content=body,
            headers={
                **self.auth(user),
                "Content-Type": content_type,
                "Accept": "application/dicom+json",
            },
        )

    def detail(self, key: str, value: object) -> None:
        self.details.setdefault(key, []).append(value)

    # --- set-up ----------------------------------------------------------------------------

    def setup(self) -> None:
        c, api, root = self.client, self.api, self.auth("admin")
        for source in ("ClinicA", "ClinicB"):
            self.ok(c.post(f"{api}/sources", json={"name": source}, headers=root))
        self.ok(
            c.put(f"{api}/roles/gatekeeper", json={"permissions": ["admin", "read"]}, headers=root)
        )
        users = {
            "ta": ("admin", [], []),
            "la": ("admin", ["ClinicA"], ["ClinicA"]),
            "gk": ("gatekeeper", [], []),
            "viewer": ("referring_physician", [], []),
            "ref_a": ("referring_physician", ["ClinicA"], []),
            "read_b": ("reading_physician", ["ClinicB"], []),
        }
        for username, (role, sources, upload_sources) in users.items():
            body = {
                "username": username,
                "role": role,
                "password": PASSWORD,
                "sources": sources,
                "upload_sources": upload_sources,
            }
            self.ok(c.post(f"{api}/users", json=body, headers=root))
            made = self.ok(c.post(f"{api}/api-keys", json={"user": username}, headers=root))
            self.keys[username] = made["key"]
        for title, source in (("PEER_A", "ClinicA"), ("PEER_B", "ClinicB")):
            body = {
                "host": "127.0.0.1",
                "port": 0,
                "query_sources": [source],
                "upload_source": source,
            }
            self.ok(c.put(f"{api}/peers/{title}", json=body, headers=root))
        # Two mixed studies: in one ClinicA uploads first, in the other ClinicB. Each holds a
        # series of each source and one series with both sources' instances; one instance per
        # request, in this order: first, second, first, second.
        for index, (first, second) in enumerate((("ClinicA", "ClinicB"), ("ClinicB", "ClinicA"))):
            study = f"2.25.2020{index + 1}"
            own = [f"{study}.1", f"{study}.2"]
            mixed = f"{study}.9"
            self.studies[first] = {"study": study, "series": [*own, mixed]}
            for number, source in enumerate((first, second, first, second), start=1):
                series = own[number - 1] if number <= 2 else mixed
                values = {**source_values(source), "SeriesNumber": 9 if number > 2 else number}
                data = ct_instance(study, series, f"{study}.{number}.1", number, values)
                answer = self.stow("ta", [data], source)
                if answer.status_code != 200:
                    raise RuntimeError(f"set-up STOW-RS: {answer.status_code} {answer.text}")

    # --- 20.2 ------------------------------------------------------------------------------

    def hidden_values(self) -> None:
        self.section = "20.2"
        leaks_show = leaks_match = total_show = total_match = sanity = 0
        by_attribute: Counter[str] = Counter()
        for user, seen in (("ref_a", "ClinicA"), ("read_b", "ClinicB")):
            hidden = source_values(OTHER[seen])
            token = TOKEN[OTHER[seen]]
            own = source_values(seen)
            headers = {**self.auth(user), "Accept": "application/dicom+json"}
            for first, layout in self.studies.items():
                s = layout["study"]
                for path in (
                    f"/studies?StudyInstanceUID={s}&includefield=00081030",
                    f"/studies?StudyInstanceUID={s}&includefield=all",
                    f"/studies/{s}/series",
                    f"/studies/{s}/series?includefield=all",
                    f"/studies/{s}/instances",
                    f"/studies/{s}/instances?includefield=all",
                    f"/series?StudyInstanceUID={s}&includefield=00081030",
                    f"/instances?StudyInstanceUID={s}&includefield=all",
                ):
                    answer = self.client.get(self.root + path, headers=headers)
                    total_show += 1
                    if answer.status_code != 200 or not answer.json():
                        sanity += 1
                        self.detail("20.2 sanity", f"{user} GET {path}: {answer.status_code}")
                        continue
                    shown = [k for k, v in hidden.items() if v in answer.text]
                    if token in answer.text:
                        leaks_show += 1
                        by_attribute.update(shown or ["(token)"])
                        self.detail(
                            "20.2 QIDO shows hidden",
                            f"{user} (first upload {first}) GET {path}: {', '.join(shown)}",
                        )
            for path, own_path in (
                (f"/studies?PatientName=*{token}*", f"/studies?PatientName=*{TOKEN[seen]}*"),
                (f"/studies?PatientName={hidden['PatientName']}", None),
                (f"/studies?PatientID={hidden['PatientID']}", None),
                (f"/studies?AccessionNumber={hidden['AccessionNumber']}", None),
                (f"/studies?ReferringPhysicianName={hidden['ReferringPhysicianName']}", None),
                (
                    f"/studies?StudyDescription=*{token}",
                    f"/studies?StudyDescription=*{TOKEN[seen]}",
                ),
                (
                    f"/series?SeriesDescription=*{token}",
                    f"/series?SeriesDescription={quote(own['SeriesDescription'])}",
                ),
                (f"/series?PatientName=*{token}*", None),
                (f"/instances?PatientName=*{token}*", f"/instances?PatientName=*{TOKEN[seen]}*"),
                (f"/instances?SeriesDescription={quote(hidden['SeriesDescription'])}", None),
                (f"/studies?PatientName={token}*&fuzzymatching=true", None),
                (f"/studies?StudyID={hidden['StudyID']}", None),
                *(
                    (f"/studies/{layout['study']}/{level}?{key}=*{token}*", None)
                    for layout in self.studies.values()
                    for level, key in (
                        ("series", "SeriesDescription"),
                        ("instances", "PatientName"),
                    )
                ),
            ):
                answer = self.client.get(self.root + path, headers=headers)
                total_match += 1
                found = answer.json() if answer.status_code == 200 and answer.content else []
                if found:
                    leaks_match += 1
                    self.detail(
                        "20.2 QIDO matches hidden", f"{user} GET {path}: {len(found)} found"
                    )
                if own_path:  # the same search on the caller's own value finds its data
                    mine = self.client.get(self.root + own_path, headers=headers)
                    if mine.status_code != 200 or not mine.content or not mine.json():
                        sanity += 1
                        self.detail("20.2 sanity", f"{user} GET {own_path}: found nothing")
        self.rows += [
            Row("20.2", "QIDO answers showing a hidden source's value", leaks_show, total_show),
            Row("20.2", "QIDO searches matching on a hidden value", leaks_match, total_match),
        ]
        self.details["20.2 hidden attributes shown over QIDO"] = dict(by_attribute)
        self.cfind(sanity)

    def _cfind_queries(self, seen: str, token: str, hidden: dict[str, str]) -> list:
        """What a peer asks: its studies at every level, then searches on the hidden values."""
        show = dict(PatientName="", PatientID="", AccessionNumber="", ReferringPhysicianName="")
        queries = [find_query("PATIENT", False, PatientName="", PatientID="")]
        for first, layout in self.studies.items():
            s = layout["study"]
            # Series 0 holds only the first uploader's instances, 1 the second's, 2 both.
            visible = [first == seen, first != seen, True]
            queries += [
                find_query("STUDY", False, StudyInstanceUID=s, StudyDescription="", **show),
                find_query(
                    "SERIES", False, StudyInstanceUID=s, SeriesInstanceUID="", SeriesDescription=""
                ),
            ]
            for series, expect in zip(layout["series"], visible, strict=True):
                queries.append(
                    find_query(
                        "IMAGE",
                        False,
                        expect,
                        StudyInstanceUID=s,
                        SeriesInstanceUID=series,
                        SOPInstanceUID="",
                        PatientName="",
                        SeriesDescription="",
                    )
                )
            queries.append(
                find_query(
                    "SERIES",
                    True,
                    StudyInstanceUID=s,
                    SeriesInstanceUID="",
                    SeriesDescription=f"*{token}",
                )
            )
        return queries + [
            find_query("PATIENT", True, PatientName=f"*{token}*", PatientID=""),
            find_query("STUDY", True, PatientName=f"*{token}*", StudyInstanceUID=""),
            find_query(
                "STUDY", True, AccessionNumber=hidden["AccessionNumber"], StudyInstanceUID=""
            ),
            find_query("STUDY", True, StudyDescription=f"*{token}", StudyInstanceUID=""),
            find_query(
                "STUDY",
                True,
                ReferringPhysicianName=hidden["ReferringPhysicianName"],
                StudyInstanceUID="",
            ),
        ]

    def cfind(self, sanity: int) -> None:
        shows = matches = total_show = total_match = errors = 0
        by_attribute: Counter[str] = Counter()
        for peer, seen in (("PEER_A", "ClinicA"), ("PEER_B", "ClinicB")):
            hidden = source_values(OTHER[seen])
            token = TOKEN[OTHER[seen]]
            ae = AE(ae_title=peer)
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
            ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = ae.associate("127.0.0.1", self.dimse_port, ae_title=SERVER_AET)
            if not assoc.is_established:
                self.rows.append(Row("20.2", "C-FIND not probed (association refused)", 0))
                return
            queries = self._cfind_queries(seen, token, hidden)
            for level, keys, ds, match, expect in queries:
                model = (
                    PatientRootQueryRetrieveInformationModelFind
                    if level == "PATIENT"
                    else StudyRootQueryRetrieveInformationModelFind
                )
                found, final = [], None
                for status, identifier in assoc.send_c_find(ds, model):
                    if status is None or "Status" not in status:
                        final = "no answer"
                        break
                    code = int(status.Status)
                    if code in (0xFF00, 0xFF01) and identifier is not None:
                        found.append(identifier)
                    else:
                        final = code
                if final not in (0, None):
                    errors += 1
                    self.detail("20.2 C-FIND errors", f"{peer} {level} {keys}: {final}")
                text = "\n".join(str(i) for i in found)
                if match:
                    total_match += 1
                    if found:
                        matches += 1
                        self.detail(
                            "20.2 C-FIND matches hidden",
                            f"{peer} {level} {keys}: {len(found)} found",
                        )
                else:
                    total_show += 1
                    if expect and not found:
                        sanity += 1
                        self.detail("20.2 sanity", f"{peer} C-FIND {level} {keys}: nothing")
                    if token in text or (found and not expect):
                        # (found and not expect: instances of a series only the hidden
                        # source holds, listed by UID)
                        shown = [k for k, v in hidden.items() if v in text]
                        if found and not expect:
                            shown.append("hidden series' instances")
                        shows += 1
                        by_attribute.update(shown or ["(token)"])
                        self.detail(
                            "20.2 C-FIND shows hidden", f"{peer} {level} {keys}: {', '.join(shown)}"
                        )
            assoc.release()
        self.rows += [
            Row("20.2", "C-FIND answers showing a hidden source's value", shows, total_show),
            Row("20.2", "C-FIND searches matching on a hidden value", matches, total_match),
            Row(
                "20.2",
                "C-FIND requests ending in an error status",
                errors,
                total_show + total_match,
            ),
            Row("20.2", "probe sanity: visible data not found (should be 0)", sanity),
        ]
        self.details["20.2 hidden attributes shown over C-FIND"] = dict(by_attribute)

    # --- 20.3 ------------------------------------------------------------------------------

    BAD_QUERIES = (
        "/studies?StudyInstanceUID=%5C",
        "/studies?StudyInstanceUID=,",
        "/studies?SOPClassesInStudy=%5C",
        "/series?SeriesInstanceUID=%5C",
        "/series?SeriesInstanceUID=,",
        "/instances?SOPInstanceUID=%5C",
        "/instances?SOPInstanceUID=,",
        "/studies/{study}/series?SeriesInstanceUID=%5C",
        "/studies/{study}/instances?SOPInstanceUID=%5C",
        "/studies?offset=9223372036854775808",
    )

    def bad_input(self) -> None:
        self.section = "20.3"
        study = self.studies["ClinicA"]["study"]
        headers = {**self.auth("ta"), "Accept": "application/dicom+json"}
        fives = 0
        for path in self.BAD_QUERIES:
            path = path.format(study=study)
            answer = self.client.get(self.root + path, headers=headers)
            self.detail("20.3 answers", f"GET {path} -> {answer.status_code}")
            fives += answer.status_code >= 500
        self.rows.append(
            Row("20.3", "5xx to the issue's bad QIDO requests", fives, len(self.BAD_QUERIES))
        )
        stow_fives = acknowledged = stored = unacknowledged_stored = listed_failed = 0
        for index, vr in enumerate((b"UL", b"XX")):
            study_uid, series_uid = f"2.25.2030{index + 1}", f"2.25.2030{index + 1}.1"
            parts = [ct_instance(study_uid, series_uid, f"{series_uid}.{n}", n) for n in (1, 2, 3)]
            parts[1] = with_columns_vr(parts[1], vr)
            good = [f"{series_uid}.1", f"{series_uid}.3"]
            answer = self.stow("ta", parts)
            stow_fives += answer.status_code >= 500
            body = {}
            try:
                body = answer.json()
            except ValueError:
                pass
            acked = [u for u in seq_uids(body, "00081199") if u in good]
            failed = seq_uids(body, "00081198")
            acknowledged += len(acked)
            listed_failed += f"{series_uid}.2" in failed
            for uid in good:
                # Polled for a few seconds: a server may answer before a later part's ingest
                # has committed (7038260 answered its 500 while the third part was storing).
                deadline = time.monotonic() + 5
                while True:
                    found = self.client.get(
                        f"{self.root}/instances", params={"SOPInstanceUID": uid}, headers=headers
                    )
                    is_stored = found.status_code == 200 and bool(found.content and found.json())
                    if is_stored or time.monotonic() > deadline:
                        break
                    time.sleep(0.25)
                stored += is_stored
                unacknowledged_stored += is_stored and uid not in acked
            self.detail(
                "20.3 answers",
                f"STOW-RS 3 parts, middle Columns as VR {vr.decode()} -> {answer.status_code}, "
                f"acknowledged {len(acked)}/2 good, bad part in FailedSOPSequence: "
                f"{f'{series_uid}.2' in failed}",
            )
        self.rows += [
            Row("20.3", "5xx to STOW-RS with a wrong-VR middle part (UL, XX)", stow_fives, 2),
            Row("20.3", "good parts acknowledged (ReferencedSOPSequence)", acknowledged, 4),
            Row("20.3", "good parts stored (found by QIDO)", stored, 4),
            Row("20.3", "good parts stored but not acknowledged", unacknowledged_stored, 4),
            Row("20.3", "bad part listed in FailedSOPSequence", listed_failed, 2),
        ]

    # --- 20.4 ------------------------------------------------------------------------------

    def keep_alive(self) -> None:
        self.section = "20.4"
        study = self.studies["ClinicA"]["study"]
        key = {"Authorization": f"Bearer {self.keys['ta']}"}
        garbage, garbage_type = b"--x\r\nnot a part", "multipart/related; boundary=x"
        parts = [
            ct_instance("2.25.20401", "2.25.20401.1", f"2.25.20401.1.{n}", n) for n in (1, 2, 3)
        ]
        parts[1] = with_columns_vr(parts[1], b"UL")
        bad_stow, bad_stow_type = multipart(parts)
        # A stored SOP Instance UID (20.3's first good part) with other content: 409.
        changed = ct_instance("2.25.20301", "2.25.20301.1", "2.25.20301.1.1", 1, {"PatientID": "X"})
        conflict, conflict_type = multipart([changed])
        errors = [
            ("GET", "/dicomweb/studies?limit=x", None, {}),
            ("GET", "/dicomweb/studies?StudyInstanceUID=%5C", None, {}),
            ("GET", "/dicomweb/studies?offset=9223372036854775808", None, {}),
            ("GET", "/dicomweb/studies/1.2.3/metadata", None, {}),
            ("GET", f"/dicomweb/studies/{study}", None, {"Accept": "text/html"}),
            ("POST", "/dicomweb/studies", b"not dicom", {"Content-Type": "text/plain"}),
            ("POST", "/dicomweb/studies", garbage, {"Content-Type": garbage_type}),
            ("POST", "/dicomweb/studies", bad_stow, {"Content-Type": bad_stow_type}),
            ("POST", "/dicomweb/studies", b"x" * 3_000_000, {"Content-Type": garbage_type}),
            ("POST", "/dicomweb/studies", parts[0] * 50, {"Content-Type": "text/plain"}),
            ("POST", "/dicomweb/studies", conflict, {"Content-Type": conflict_type}),
            ("GET", "/api/v1/tenants", None, {}),
            ("GET", "/dicomweb/studies", None, {"Authorization": "Bearer tsk_wrong"}),
        ]
        broken = 0
        for method, path, body, extra in errors:
            conn = http.client.HTTPConnection(
                "127.0.0.1", int(self.base.rsplit(":", 1)[1]), timeout=60
            )
            conn.auto_open = 0  # never reconnect behind our back
            conn.connect()
            status, outcome = None, "kept"
            try:
                conn.request(method, path, body=body, headers={**key, **extra})
                response = conn.getresponse()
                response.read()
                status = response.status
                self.statuses[(self.section, status)] += 1
                if status >= 500:
                    self.server_errors.append(f"[20.4] {method} {path} -> {status}")
                conn.request("GET", "/dicomweb/studies?limit=1", headers=key)
                following = conn.getresponse()
                following.read()
                self.statuses[(self.section, following.status)] += 1
                if following.status != 200:
                    outcome = f"next request answered {following.status}"
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"broken: {type(exc).__name__}"
            finally:
                conn.close()
            broken += outcome != "kept"
            self.detail("20.4 connections", f"{method} {path} -> {status}; next request: {outcome}")
        self.rows.append(
            Row("20.4", "kept-alive connections broken after an error answer", broken, len(errors))
        )

    # --- fuzz ------------------------------------------------------------------------------

    KEYS = [
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassesInStudy",
        "SOPClassUID", "ModalitiesInStudy", "Modality", "PatientName", "PatientID",
        "StudyDate", "StudyTime", "AccessionNumber", "InstanceNumber", "SeriesNumber",
        "NumberOfStudyRelatedInstances", "0020000D", "00100010", "00080020", "Rows",
        "00091001", "ZZZZ", "", "limit", "offset", "fuzzymatching", "includefield",
    ]  # fmt: skip
    PIECES = [
        "\\", ",", "*", "?", "-", "^", "=", ".", " ", "%", "%00", "%5C", "%2C", "%FF", "%C3%A9",
        "1.2.3", "2.25.1", "0", "1", "-1", "9223372036854775807", "9223372036854775808",
        "99999999999999999999999", "20240101", "2024", "101500", "+0100", "CT", "all", "true",
        "DOE", "é", "&", "#", "+", "00100010", "1e3", "null",
    ]  # fmt: skip
    PATHS = [
        "/studies", "/series", "/instances", "/studies/{study}/series",
        "/studies/{study}/instances", "/studies/{study}/series/{series}/instances",
        "/studies/1.2.3/series", "/studies/x/series",
    ]  # fmt: skip
    VRS = [b"AE", b"CS", b"DA", b"DS", b"FD", b"IS", b"LO", b"OB", b"PN", b"SQ", b"SS", b"UI",
           b"UL", b"UN", b"US", b"UT", b"XX", b"\x00\x00", b"ul"]  # fmt: skip

    def _query(self, rng: random.Random) -> str:
        pairs = []
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(self.KEYS)
            value = "".join(rng.choice(self.PIECES) for _ in range(rng.randint(0, 4)))
            value = "".join(p if p.startswith("%") else quote(p, safe="") for p in value)
            pairs.append(f"{quote(key, safe='')}={value}" if rng.random() > 0.05 else key)
        return "&".join(pairs)

    def _mutant(self, rng: random.Random, number: int) -> bytes:
        base = f"2.25.205{number:04d}"
        meta, body, offsets = split_part10(
            ct_instance(base, f"{base}.1", f"{base}.1.1", 1, {"PatientName": "FUZZ^PROBE"})
        )
        body = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["flip", "vr", "length", "insert", "delete", "truncate"])
            at = rng.choice(offsets)
            if kind == "flip":
                spot = rng.randrange(len(body))
                body[spot] ^= 1 << rng.randrange(8)
            elif kind == "vr":
                body[at + 4 : at + 6] = rng.choice(self.VRS)
            elif kind == "length":
                long = bytes(body[at + 4 : at + 6]) in LONG_VRS
                where, size = (at + 8, 4) if long else (at + 6, 2)
                value = rng.choice([0, 1, 3, 0xFFFF, 0xFFFFFFFF, rng.randrange(1 << (8 * size))])
                body[where : where + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(
                    size, "little"
                )
            elif kind == "insert":
                spot = rng.randrange(len(body))
                body[spot:spot] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif kind == "delete":
                spot = rng.randrange(len(body))
                del body[spot : spot + rng.randint(1, 8)]
            else:
                del body[rng.randrange(len(body)) :]
        return meta + bytes(body)

    def fuzz(self, count: int, seed: int, server: Server | None) -> None:
        self.section = "fuzz"
        rng = random.Random(seed)
        layout = self.studies["ClinicA"]
        headers = {**self.auth("ta"), "Accept": "application/dicom+json"}
        fives = stows = queries = unacked = 0
        statuses: Counter[int] = Counter()
        for number in range(count):
            if rng.random() < 0.8:
                queries += 1
                path = rng.choice(self.PATHS).format(
                    study=layout["study"], series=layout["series"][0]
                )
                url = f"{self.root}{path}?{self._query(rng)}"
                try:
                    answer = self.client.get(url, headers=headers)
                except httpx.HTTPError as exc:
                    self.detail("fuzz failures", f"GET {url}: {type(exc).__name__}")
                    statuses[0] += 1
                    continue
            else:
                stows += 1
                mutant = self._mutant(rng, number)
                sandwich = rng.random() < 0.5
                good = []
                if sandwich:
                    good = [
                        ct_instance(
                            f"2.25.206{number:04d}",
                            f"2.25.206{number:04d}.1",
                            f"2.25.206{number:04d}.1.{n}",
                            n,
                        )
                        for n in (1, 2)
                    ]
                parts = [good[0], mutant, good[1]] if sandwich else [mutant]
                try:
                    answer = self.stow("ta", parts)
                except httpx.HTTPError as exc:
                    self.detail("fuzz failures", f"STOW mutant {number}: {type(exc).__name__}")
                    statuses[0] += 1
                    continue
                if sandwich:
                    try:
                        acked = seq_uids(answer.json(), "00081199")
                    except ValueError:
                        acked = []
                    unacked += sum(sop_uid_of(g) not in acked for g in good)
            statuses[answer.status_code] += 1
            if answer.status_code >= 500:
                fives += 1
                what = f"GET {url}" if answer.request.method == "GET" else f"STOW mutant {number}"
                self.detail("fuzz 5xx", f"{what} -> {answer.status_code}")
        try:
            health = httpx.get(f"{self.base}/healthz", timeout=10).status_code
            search = self.client.get(f"{self.root}/studies?limit=1", headers=headers).status_code
            answering = health == 200 and search == 200
        except httpx.HTTPError:
            answering = False
        alive = server.alive() if server else answering
        self.details["fuzz statuses"] = {str(k): v for k, v in sorted(statuses.items())}
        self.rows += [
            Row(
                "fuzz",
                f"5xx of {count} requests ({queries} QIDO, {stows} STOW-RS, seed {seed})",
                fives,
                count,
            ),
            Row("fuzz", "good parts beside a mutant not acknowledged", unacked),
            Row("fuzz", "requests without any answer (connection failed)", statuses[0], count),
            Row("fuzz", "server still answers afterwards (1 = yes)", int(answering and alive), 1),
        ]

    # --- 20.1 (last: it may take the system administrator over) -------------------------

    def escalation(self) -> None:
        self.section = "20.1"
        c, api = self.client, self.api
        attempts: list[tuple[str, str, bool]] = []  # who, what, succeeded
        minted: list[tuple[str, str]] = []  # what, bearer token

        def tenants_with(token: str) -> int:
            return c.get(f"{api}/tenants", headers={"Authorization": f"Bearer {token}"}).status_code

        def login(username: str, password: str) -> str | None:
            answer = c.post(f"{api}/login", json={"username": username, "password": password})
            return answer.json().get("access_token") if answer.status_code == 200 else None

        def attempt(
            who: str, what: str, method: str, path: str, body: dict | None = None
        ) -> httpx.Response:
            answer = c.request(method, f"{api}{path}", json=body, headers=self.auth(who))
            attempts.append((who, what, answer.status_code < 300))
            self.detail("20.1 attempts", f"{who}: {what}: {method} {path} -> {answer.status_code}")
            return answer

        if c.get(f"{api}/tenants", headers=self.auth("ta")).status_code == 200:
            self.detail("20.1 attempts", "ta reaches /tenants with its own key (!)")

        # A plain tenant admin against the system administrator `admin`.
        made = attempt(
            "ta", "mint an API key for the system admin", "POST", "/api-keys", {"user": "admin"}
        )
        if made.status_code < 300:
            minted.append(("ta's key for admin", made.json()["key"]))
        changed = attempt(
            "ta",
            "set the system admin's password",
            "PATCH",
            "/users/admin",
            {"password": NEW_PASSWORD},
        )
        if changed.status_code < 300:
            token = login("admin", NEW_PASSWORD)
            if token:
                minted.append(("login as admin with the password ta set", token))
        made = attempt(
            "ta",
            "custom role holding `system`",
            "PUT",
            "/roles/probe_sys",
            {"permissions": ["system"]},
        )
        if made.status_code < 300:
            attempt(
                "ta",
                "user with that role",
                "POST",
                "/users",
                {"username": "probe_sys1", "role": "probe_sys", "password": PASSWORD},
            )
            token = login("probe_sys1", PASSWORD)
            if token:
                minted.append(("login of a user with role probe_sys", token))
        # A `system_admin` field the API does not document: counted only if it takes effect.
        made = c.post(
            f"{api}/users",
            json={
                "username": "probe_sys2",
                "role": "admin",
                "password": PASSWORD,
                "system_admin": True,
                "system": True,
            },
            headers=self.auth("ta"),
        )
        token = login("probe_sys2", PASSWORD) if made.status_code < 300 else None
        took = bool(token) and tenants_with(token) == 200
        attempts.append(("ta", "create a user with a system flag in the body", took))
        self.detail(
            "20.1 attempts",
            f"ta: new user, system_admin=true -> {made.status_code}, reaches /tenants: {took}",
        )
        raised = c.patch(
            f"{api}/users/ta", json={"system_admin": True, "system": True}, headers=self.auth("ta")
        )
        took = tenants_with(self.keys["ta"]) == 200
        attempts.append(("ta", "give itself a system flag (PATCH /users/ta)", took))
        self.detail(
            "20.1 attempts",
            f"ta: PATCH /users/ta system_admin -> {raised.status_code}, reaches /tenants: {took}",
        )

        # A source-locked admin (ClinicA) widening past its source.
        attempt(
            "la",
            "create an unlocked user",
            "POST",
            "/users",
            {"username": "probe_l1", "role": "referring_physician", "password": PASSWORD},
        )
        attempt(
            "la",
            "create a user who sees ClinicB",
            "POST",
            "/users",
            {"username": "probe_l2", "role": "referring_physician", "sources": ["ClinicB"]},
        )
        made = attempt(
            "la", "mint a key for a ClinicB user", "POST", "/api-keys", {"user": "read_b"}
        )
        if made.status_code < 300:
            minted.append(("la's key for read_b", made.json()["key"]))
        attempt(
            "la",
            "set a ClinicB user's password",
            "PATCH",
            "/users/read_b",
            {"password": NEW_PASSWORD},
        )
        made = attempt(
            "la", "mint a key for the unlocked admin ta", "POST", "/api-keys", {"user": "ta"}
        )
        if made.status_code < 300:
            minted.append(("la's key for ta", made.json()["key"]))
        attempt(
            "la",
            "peer querying every source",
            "PUT",
            "/peers/PROBE_WIDE",
            {"host": "127.0.0.1", "port": 104, "upload_source": "ClinicA"},
        )
        attempt(
            "la",
            "peer storing into ClinicB",
            "PUT",
            "/peers/PROBE_WIDEB",
            {
                "host": "127.0.0.1",
                "port": 104,
                "upload_source": "ClinicB",
                "query_sources": ["ClinicA"],
            },
        )
        attempt(
            "la",
            "repoint PEER_B (sees ClinicB)",
            "PUT",
            "/peers/PEER_B",
            {
                "host": "10.0.0.9",
                "port": 104,
                "upload_source": "ClinicA",
                "query_sources": ["ClinicA"],
            },
        )
        attempt("la", "delete PEER_B (sees ClinicB)", "DELETE", "/peers/PEER_B")
        attempt("la", "unlock itself (sources [])", "PATCH", "/users/la", {"sources": []})
        attempt(
            "la",
            "add ClinicB to its own sources",
            "PATCH",
            "/users/la",
            {"sources": ["ClinicA", "ClinicB"]},
        )
        attempt(
            "la",
            "upload to any source (upload_sources [])",
            "PATCH",
            "/users/la",
            {"upload_sources": []},
        )
        made = c.post(f"{api}/sources", json={"name": "ProbeC"}, headers=self.auth("la"))
        self.detail(
            "20.1 not counted",
            f"la: POST /sources ProbeC -> {made.status_code} (a label grants no access by itself)",
        )

        # A custom admin role holding only `admin` and `read`.
        attempt(
            "gk",
            "create a technologist (upload)",
            "POST",
            "/users",
            {"username": "probe_g1", "role": "technologist", "password": PASSWORD},
        )
        attempt("gk", "make a reader an admin", "PATCH", "/users/viewer", {"role": "admin"})
        attempt(
            "gk",
            "custom role with upload",
            "PUT",
            "/roles/probe_bigger",
            {"permissions": ["upload"]},
        )
        attempt(
            "gk",
            "widen its own role",
            "PUT",
            "/roles/gatekeeper",
            {"permissions": ["admin", "read", "orders"]},
        )
        attempt(
            "gk",
            "peer that may store",
            "PUT",
            "/peers/PROBE_STORER",
            {"host": "127.0.0.1", "port": 104},
        )
        made = attempt(
            "gk", "mint a key for the full admin ta", "POST", "/api-keys", {"user": "ta"}
        )
        if made.status_code < 300:
            minted.append(("gk's key for ta", made.json()["key"]))
        attempt(
            "gk", "set the full admin's password", "PATCH", "/users/ta", {"password": NEW_PASSWORD}
        )

        # Check every minted credential before the destructive attempts below.
        reached = 0
        for what, token in minted:
            status = tenants_with(token)
            reached += status == 200
            self.detail("20.1 minted credentials", f"{what}: GET /api/v1/tenants -> {status}")

        # Destructive, against the system administrator (last: they may lock it out).
        if self.root_key_id is not None:
            attempt(
                "ta", "revoke the system admin's API key", "DELETE", f"/api-keys/{self.root_key_id}"
            )
        attempt(
            "ta",
            "demote the system admin's role",
            "PATCH",
            "/users/admin",
            {"role": "referring_physician"},
        )
        attempt("ta", "disable the system admin", "PATCH", "/users/admin", {"disabled": True})
        attempt("ta", "delete the system admin", "DELETE", "/users/admin")
        attempt("gk", "delete the full admin ta", "DELETE", "/users/ta")

        succeeded = sum(ok for _, _, ok in attempts)
        by_who = Counter(who for who, _, ok in attempts if ok)
        self.rows += [
            Row(
                "20.1",
                "escalation attempts that succeeded",
                succeeded,
                len(attempts),
                ", ".join(f"{w} {n}" for w, n in sorted(by_who.items())),
            ),
            Row("20.1", "minted credentials reaching GET /api/v1/tenants", reached, len(minted)),
        ]


def print_table(title: str, rows: list[Row], extra: list[Row]) -> None:
    print(f"\n{title}")
    print("| item | measure | count | of | note |\n| --- | --- | ---: | ---: | --- |")
    for row in rows + extra:
        of = "" if row.of is None else str(row.of)
        print(f"| {row.item} | {row.what} | {row.count} | {of} | {row.note} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--checkout",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the Tessera checkout whose server is probed (default: this one)",
    )
    parser.add_argument("--fuzz", type=int, default=300, help="fuzz requests (default 300)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", type=Path, help="also write the counts and details here")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and log")
    parser.add_argument("--quiet", action="store_true", help="only the table")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="security-probe-"))
    server = Server(args.checkout.resolve(), workdir)
    commit = subprocess.run(
        ["git", "-C", str(server.checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    boot_out = server.cli("admin", "bootstrap", "--system-admin", "--json", "--password", PASSWORD)
    boot = json.loads(boot_out[boot_out.index("{") :])
    print(f"data folder and server log: {workdir} (kept with --keep)", file=sys.stderr)
    server.start()
    probe = Probe(server.base, server.dimse_port, boot["api_key"], boot.get("api_key_id"))
    started = time.monotonic()
    try:
        probe.setup()
        probe.hidden_values()
        probe.bad_input()
        probe.keep_alive()
        probe.fuzz(args.fuzz, args.seed, server)
        probe.escalation()
    finally:
        alive_at_end = server.alive()
        server.stop()
    extra = [
        Row("all", "5xx answers over the whole run (set-up included)", len(probe.server_errors)),
        Row(
            "all",
            "connection resets met by the pooled client (each request sent again)",
            len(probe.resets),
        ),
        Row("all", "tracebacks in the server log", server.tracebacks()),
        Row("all", "server process alive at the end (1 = yes)", int(alive_at_end), 1),
    ]
    elapsed = time.monotonic() - started
    title = f"security probe (issue 20): {server.checkout} @ {commit}, {elapsed:.0f} s"
    if not args.quiet:
        for key, values in probe.details.items():
            print(f"\n# {key}")
            if isinstance(values, dict):
                print(f"  {values}")
            else:
                for value in values:
                    print(f"  {value}")
        if probe.server_errors:
            print("\n# 5xx answers")
            for line in probe.server_errors:
                print(f"  {line}")
        if probe.resets:
            print("\n# connection resets (the request was sent again on a new connection)")
            for line in probe.resets:
                print(f"  {line}")
    order = ["20.1", "20.2", "20.3", "20.4", "fuzz"]
    print_table(title, sorted(probe.rows, key=lambda row: order.index(row.item)), extra)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "checkout": str(server.checkout),
                    "commit": commit,
                    "rows": [row.__dict__ for row in probe.rows + extra],
                    "details": probe.details,
                    "server_errors": probe.server_errors,
                    "resets": probe.resets,
                },
                indent=2,
            )
        )
    if args.keep:
        print(f"\ndata and log kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
