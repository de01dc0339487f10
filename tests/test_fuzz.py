"""Fuzz: mutated DICOM over STOW-RS and C-STORE, random query strings over QIDO-RS.

A seeded mutator (deterministic, bounded) changes the data sets of pydicom's test files and of
generated instances: flipped and overwritten bytes, VRs swapped for wrong or unknown ones,
lengths set to odd or huge values, bytes inserted, removed, truncated. Each mutant is sent to
one tenant over STOW-RS and to another over C-STORE (same bytes, same UIDs: the tenants
do not see each other). Nothing may answer 5xx, both paths must give the same verdict
(stored or refused), and the server must still answer afterwards.
"""

from __future__ import annotations

import io
import random
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE, _config

from tessera import synthetic
from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.index import peers
from tessera.index.database import Database
from tessera.index.tenancy import create_tenant
from tests.dimse_support import start_dimse_server

# The SCU sends each file's data set as it is on disk (no decode / re-encode).
_config.STORE_SEND_CHUNKED_DATASET = True
# pydicom warns about every odd value the mutator makes.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEED = 20261201
MUTANTS = 160
QUERIES = 400
TESTDATA = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "reportsi.dcm",
    "image_dfl.dcm",
    "MR_small_bigendian.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
]
VRS = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"XX", b"\x00\x00", b"ul",
]  # fmt: skip
_SHORT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip


@dataclass
class Seed:
    """A Part 10 file split at the end of its File Meta, and where its elements start."""

    name: str
    meta: bytes  # preamble, DICM and File Meta Information
    body: bytes  # the data set
    explicit: bool
    element_offsets: list[int]  # offsets in `body` of top-level element headers
    uids: list[str]  # Study, Series, SOP Instance UID (renewed per mutant)


def _seed(name: str, data: bytes) -> Seed:
    fh = io.BytesIO(data)
    pydicom.filereader.read_preamble(fh, False)
    pydicom.filereader._read_file_meta_info(fh)
    start = fh.tell()
    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    explicit = not dataset.original_encoding[0]
    offsets = []
    for tag in dataset.keys():
        raw = dataset.get_item(tag)
        tell = getattr(raw, "value_tell", None)
        if tell is None:
            continue
        header = 8
        if explicit and getattr(raw, "VR", None) not in {v.decode() for v in _SHORT_VRS}:
            header = 12
        offsets.append(tell - header - start)
    uids = [
        str(dataset.StudyInstanceUID),
        str(dataset.SeriesInstanceUID),
        str(dataset.SOPInstanceUID),
    ]
    return Seed(name, data[:start], data[start:], explicit, offsets, uids)


def _with_sop_instance_uid(data: bytes, sop_instance_uid: str) -> bytes:
    """Generated instances get random UIDs: fixed ones keep the mutants the same every run."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def seeds() -> list[Seed]:
    made = [_seed(name, Path(get_testdata_file(name)).read_bytes()) for name in TESTDATA]
    study = synthetic.StudySpec(patient_name="FUZZ^SEED", study_instance_uid="2.25.1000")
    ct = synthetic.ct_image(study, "2.25.1001", 1, rows=16, columns=16)
    made.append(_seed("ct", _with_sop_instance_uid(ct, "2.25.1001.1")))
    mr = synthetic.mr_rle_image(study, "2.25.1002", 1, size=16)
    made.append(_seed("mr-rle", _with_sop_instance_uid(mr, "2.25.1002.1")))
    return made


def _fresh_uid(rng: random.Random, length: int) -> str:
    digits = max(1, length - 5)
    return (
        "2.25."
        + str(rng.randint(1, 9))
        + "".join(str(rng.randint(0, 9)) for _ in range(digits - 1))
    )


def mutate(rng: random.Random, seed: Seed) -> bytes:
    """A copy of `seed` with new UIDs (same lengths) and one to three mutations of its data set."""
    meta, body = seed.meta, bytearray(seed.body)
    for uid in seed.uids:
        new = _fresh_uid(rng, len(uid)).encode()
        meta = meta.replace(uid.encode(), new)
        body = bytearray(bytes(body).replace(uid.encode(), new))
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(
            ["flip", "vr", "retype", "length", "insert", "delete", "truncate", "overwrite"]
        )
        at = rng.choice(seed.element_offsets) if seed.element_offsets else 0
        if kind == "flip":
            position = rng.randrange(len(body))
            body[position] ^= 1 << rng.randrange(8)
        elif kind == "vr" and seed.explicit:
            body[at + 4 : at + 6] = rng.choice(VRS)
        elif kind == "retype" and bytes(body[at + 4 : at + 6]) in _SHORT_VRS:
            # Another VR with the same header form: the value no longer fits (Columns as UL
            # with 2 bytes, a date as FD) or the VR is unknown.
            body[at + 4 : at + 6] = rng.choice([*sorted(_SHORT_VRS), b"XX"])
        elif kind == "length":
            length_at = at + (
                6 if seed.explicit and bytes(body[at + 4 : at + 6]) in _SHORT_VRS else 8
            )
            size = 2 if length_at == at + 6 else 4
            value = rng.choice([0, 1, 3, 0xFFFF, 0xFFFFFFFF, rng.randrange(1 << (8 * size))])
            value &= (1 << (8 * size)) - 1
            body[length_at : length_at + size] = value.to_bytes(size, "little")
        elif kind == "insert":
            position = rng.randrange(len(body))
            body[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == "delete":
            position = rng.randrange(len(body))
            del body[position : position + rng.randint(1, 8)]
        elif kind == "truncate":
            del body[rng.randrange(len(body)) :]
        else:
            position = at + rng.randrange(16)
            body[position : position + 4] = rng.choice(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xfe\xff\x00\xe0", b"\\\\\\\\"]
            )
    return meta + bytes(body)


def _file_meta(data: bytes) -> pydicom.Dataset:
    fh = io.BytesIO(data)
    pydicom.filereader.read_preamble(fh, False)
    return pydicom.filereader._read_file_meta_info(fh)


def _context(data: bytes) -> tuple[str, str]:
    meta = _file_meta(data)
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


def _announced(data: bytes) -> tuple[str, str]:
    meta = _file_meta(data)
    return str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID)


def _same_sop_in_data_set(data: bytes) -> bool:
    """Does the data set name the SOP Class and Instance its File Meta announces? When a
    mutation changed them, C-STORE refuses the mismatch (0xA900) and STOW-RS does not look:
    such a mutant is sent on neither path, so that both tenants keep the same contents."""
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        found = (str(dataset.SOPClassUID).strip(), str(dataset.SOPInstanceUID).strip())
    except Exception:
        return True  # unreadable: refused by both
    return found == _announced(data)


def stow_verdict(client: httpx.Client, root: str, data: bytes) -> tuple[bool, int]:
    boundary = multipart_writer.new_boundary()
    response = client.post(
        f"{root}/studies",
        content=multipart_writer.body(boundary, [data]),
        headers={"Content-Type": request_content_type(boundary)},
    )
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 409), response.text
    body = response.json()
    stored = "00081199" in body
    assert stored == (response.status_code == 200)
    reason = 0 if stored else body["00081198"]["Value"][0]["00081197"]["Value"][0]
    return stored, reason


def _retrieve_everything(client: httpx.Client, root: str, data: bytes) -> None:
    """A stored mutant is found, and its metadata, instance, first frame and rendering
    answer without a 5xx (a 404 or 406 for what it lacks or cannot be converted)."""
    _, sop_instance_uid = _announced(data)
    found = client.get(f"{root}/instances", params={"SOPInstanceUID": sop_instance_uid})
    assert found.status_code == 200, found.text
    (match,) = found.json()
    study_uid = match["0020000D"]["Value"][0]
    series_uid = match["0020000E"]["Value"][0]
    url = f"{root}/studies/{study_uid}/series/{series_uid}/instances/{sop_instance_uid}"
    for suffix, accept in (
        ("/metadata", "application/dicom+json"),
        ("", 'multipart/related; type="application/dicom"; transfer-syntax=*'),
        ("", 'multipart/related; type="application/dicom"'),
        ("/frames/1", 'multipart/related; type="application/octet-stream"; transfer-syntax=*'),
        ("/rendered", "image/jpeg"),
    ):
        response = client.get(url + suffix, headers={"Accept": accept})
        assert response.status_code < 500, (url + suffix, accept, response.text)


@pytest.fixture
def dimse_server(server_factory):  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory)
    database = Database(server.database_url)
    with database.write() as conn:
        tenant = create_tenant(conn, "fuzz-dimse")
        peers.add_ae_title(conn, tenant.id, "FUZZDIMSE")
        peers.add_peer(conn, tenant.id, "FUZZSCU", "127.0.0.1", 0)
    database.dispose()
    return server


def test_mutated_dicom_over_stow_and_c_store(dimse_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = dimse_server
    rng = random.Random(SEED)
    all_seeds = seeds()
    mutants = [mutate(rng, rng.choice(all_seeds)) for _ in range(MUTANTS)]
    ae = AE(ae_title="FUZZSCU")
    ae.dimse_timeout = 120  # a slow, shared CI machine is no failure
    # One presentation context per (SOP Class, transfer syntax): a context accepts one syntax.
    for sop_class, syntax in sorted({_context(data) for data in mutants}):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", server.dimse_port, ae_title="FUZZDIMSE")
    assert assoc.is_established

    started = time.monotonic()
    disagreements, skipped, stored_count, refused = [], 0, 0, {}
    with httpx.Client(timeout=30) as client:
        for index, data in enumerate(mutants):
            if not _same_sop_in_data_set(data):
                skipped += 1
                continue
            path = tmp_path / f"mutant-{index:03d}.dcm"
            path.write_bytes(data)
            stow_stored, reason = stow_verdict(client, server.dicomweb, data)
            if not assoc.is_established:
                assoc = ae.associate("127.0.0.1", server.dimse_port, ae_title="FUZZDIMSE")
            status = assoc.send_c_store(path)
            assert "Status" in status, f"mutant {index}: no C-STORE response"
            c_store_stored = int(status.Status) == 0
            # 0x0110 / 0xC211 (processing failure) is what an unforeseen exception answers.
            assert reason != 0x0110, f"mutant {index}: processing failure over STOW-RS"
            assert int(status.Status) not in (0x0110, 0xC211), f"mutant {index}: {status}"
            stored_count += stow_stored
            if not stow_stored:
                refused[reason] = refused.get(reason, 0) + 1
            if stow_stored != c_store_stored:
                disagreements.append((index, hex(reason), hex(int(status.Status))))
            if stow_stored:
                _retrieve_everything(client, server.dicomweb, data)
    assoc.release()
    elapsed = time.monotonic() - started
    print(
        f"{MUTANTS} mutants in {elapsed:.1f} s: {stored_count} stored, refused by reason "
        f"{ {hex(k): v for k, v in sorted(refused.items())} }, {skipped} skipped"
    )
    assert not disagreements, disagreements
    # Both verdicts occur: the mutator is neither too gentle nor too destructive.
    assert 0 < stored_count < MUTANTS
    assert skipped < MUTANTS // 4
    assert server.alive()
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200


_KEYS = [
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassesInStudy",
    "SOPClassUID", "ModalitiesInStudy", "Modality", "PatientName", "PatientID",
    "StudyDate", "StudyTime", "AccessionNumber", "InstanceNumber", "SeriesNumber",
    "NumberOfStudyRelatedInstances", "0020000D", "00100010", "00080020", "Rows",
    "ReferencedSOPSequence.ReferencedSOPInstanceUID", "00091001", "ZZZZ", "",
    "limit", "offset", "fuzzymatching", "includefield", "accept", "charset",
]  # fmt: skip
_PIECES = [
    "\\", ",", "*", "?", "-", "^", "=", ".", " ", "%", "%00", "%5C", "%2C", "%FF", "%C3%A9",
    "1.2.3", "2.25.1", "0", "1", "-1", "9223372036854775807", "9223372036854775808",
    "99999999999999999999999", "20240101", "2024", "101500", "+0100", "CT", "all", "true",
    "DOE", "é", "\x7f", "&", "#", "+", "00100010", "1e3", "null", "[]", "\x00",
]  # fmt: skip
_PATHS = [
    "/studies", "/series", "/instances", "/studies/{study}/series",
    "/studies/{study}/instances", "/studies/{study}/series/{series}/instances",
    "/studies/1.2.3/series", "/studies/x/series", "/studies/{study}/series/1..2/instances",
]  # fmt: skip


def random_query(rng: random.Random) -> str:
    pairs = []
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(_KEYS)
        value = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 4)))
        # Pieces with a '%' are sent percent-encoded as they are; the others are quoted.
        value = "".join(p if p.startswith("%") else quote(p, safe="") for p in value)
        pairs.append(f"{quote(key, safe='')}={value}" if rng.random() > 0.05 else key)
    return "&".join(pairs)


def test_random_query_strings_over_qido(server) -> None:  # type: ignore[no-untyped-def]
    study = synthetic.StudySpec(patient_name="FUZZ^QUERY")
    series_uid = pydicom.uid.generate_uid()
    boundary = multipart_writer.new_boundary()
    parts = [synthetic.ct_image(study, series_uid, n, rows=8, columns=8) for n in (1, 2)]
    response = httpx.post(
        f"{server.dicomweb}/studies",
        content=multipart_writer.body(boundary, parts),
        headers={"Content-Type": request_content_type(boundary)},
    )
    assert response.status_code == 200, response.text
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as client:
        for _ in range(QUERIES):
            path = rng.choice(_PATHS).format(study=study.study_instance_uid, series=series_uid)
            url = f"{server.dicomweb}{path}?{random_query(rng)}"
            answer = client.get(url)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, f"{url}: {answer.status_code} {answer.text}"
            if answer.status_code == 400:
                assert answer.json()["detail"], url
    print(f"{QUERIES} random queries: {dict(sorted(statuses.items()))}")
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0
    assert server.alive()
