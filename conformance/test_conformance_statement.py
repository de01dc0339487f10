"""conformance/CONFORMANCE.md against the code and a running server: its PS3.2 sections are
there, the tables read off the code match it, and a live `tessera serve` serves every
resource, accepts every query key and every DIMSE presentation context the tables list."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.uid import JPEG2000Lossless
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from websockets.sync.client import connect

from conformance.conftest import OHIF_DIR, stow
from conformance.tables import STATEMENT, TABLES, table_in
from tessera.index.query_attributes import ATTRIBUTES, Level
from tests.conftest import ServerProcess, free_port
from tests.dimse_support import wait_port


@pytest.fixture(scope="module")
def statement() -> str:
    return STATEMENT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    """A server with its DIMSE listener on, accepting any calling AE title."""
    workdir = tmp_path_factory.mktemp("statement")
    dimse_port = free_port()
    process = ServerProcess(
        data_dir=workdir / "data",
        database_url=f"sqlite:///{workdir / 'index.sqlite3'}",
        env_extra={
            "TESSERA_WORKERS": "1",
            "TESSERA_DIMSE_PORT": str(dimse_port),
            "TESSERA_DIMSE_ACCEPT_UNKNOWN": "true",
        },
    )
    process.dimse_port = dimse_port  # type: ignore[attr-defined]
    process.start()
    wait_port(dimse_port)
    yield process
    process.stop()


def rows(table: str) -> list[list[str]]:
    """The cells of a markdown table's body rows."""
    lines = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


PS32_SECTIONS = [
    "## 1. Overview",
    "### 1.1 Implementation model",
    "## 2. Network services (DICOMweb, PS3.18)",
    "## 3. DIMSE services",
    "## 4. Media interchange",
    "## 5. Support of character sets",
    "## 6. Security",
    "## 7. Annexes",
]


def test_statement_has_the_ps32_sections(statement):
    positions = []
    for heading in PS32_SECTIONS:
        assert re.search(rf"^{re.escape(heading)}", statement, re.M), heading
        positions.append(statement.index(heading))
    assert positions == sorted(positions), "sections out of order"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_matches_the_code(statement, name):
    """Fails when the code changed and the statement did not: run
    `python -m conformance.tables --write` and review the difference."""
    written = table_in(statement, name)
    assert written is not None, f"no <!-- table:{name} --> in CONFORMANCE.md"
    assert written == TABLES[name](), f"table {name} differs from the code"


def _unrouted(response: httpx.Response) -> bool:
    """The router's own answer for a path or method it does not serve (tessera.dicomweb.app)."""
    if response.status_code not in (404, 405):
        return False
    detail = response.text
    return "no resource at" in detail or "is not supported on" in detail


def test_every_listed_resource_is_served(server, statement):
    for method, resource, _ in rows(table_in(statement, "dicomweb-resources") or ""):
        path = resource.strip("`").replace("{root}", server.dicomweb)
        # UIDs for the study, series, instance; then a frame list or a bulk data tag.
        last = "7FE00010" if "/bulkdata/" in path else "1"
        for sample in ("1.2.3", "1.2.3.4", "1.2.3.4.5", last):
            path = path.replace("{}", sample, 1)
        for verb in method.split(", "):
            if verb == "WebSocket":  # the UPS-RS notification channel opens
                with connect(path.replace("http", "ws", 1), open_timeout=30) as channel:
                    assert channel.protocol.state.name == "OPEN"
                continue
            response = httpx.request(verb, path, timeout=30)
            assert not _unrouted(response), f"{verb} {path}: {response.status_code}"
            assert response.status_code < 500, f"{verb} {path}: {response.text}"


_SAMPLE_BY_VR = {
    "PN": "DOE*",
    "LO": "X",
    "SH": "X",
    "DA": "20240101",
    "TM": "101500",
    "DT": "20240101120000",
    "UI": "1.2.3",
    "CS": "CT",
    "IS": "1",
    "US": "512",
}
_SEARCH_PATH = {
    Level.PATIENT: "/studies",
    Level.STUDY: "/studies",
    Level.SERIES: "/series",
    Level.INSTANCE: "/instances",
}


def test_every_matching_key_is_accepted(server):
    for attribute in ATTRIBUTES:
        if not attribute.matchable:
            continue
        value = (
            "+0100" if attribute.keyword == "TimezoneOffsetFromUTC" else _SAMPLE_BY_VR[attribute.vr]
        )
        url = f"{server.dicomweb}{_SEARCH_PATH[attribute.level]}"
        for key in (attribute.keyword, attribute.tag_hex):
            response = httpx.get(url, params={key: value}, timeout=30)
            assert response.status_code in (200, 204), f"{key}={value}: {response.text}"


def test_every_listed_dimse_context_is_accepted(server, statement):
    table = rows(table_in(statement, "dimse-contexts") or "")
    assert table
    ae = AE(ae_title="CONFORMANCE")
    for _, sop_class, _, syntaxes in table:
        for syntax in re.findall(r"`([0-9.]+)`", syntaxes):
            ae.add_requested_context(sop_class.strip("`"), syntax)
    # The storage claim: any storage SOP class, with the transfer syntax proposed.
    ae.add_requested_context(CTImageStorage, JPEG2000Lossless)
    assoc = ae.associate("127.0.0.1", server.dimse_port, ae_title="TESSERA")
    try:
        assert assoc.is_established
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
    finally:
        assoc.release()
    for context in ae.requested_contexts:
        assert (context.abstract_syntax, context.transfer_syntax[0]) in accepted, context


def test_tested_client_versions_are_the_pinned_ones(statement):
    ohif = json.loads((OHIF_DIR / "package.json").read_text())["ohif"]["version"]
    assert f"| OHIF Viewer (`@ohif/app`) in Debian's Chromium | {ohif} |" in statement
    client = ".".join(version("dicomweb-client").split(".")[:2])
    assert f"| dicomweb-client (PyPI) | {client} |" in statement


CHARSET_FILES = ["chrArab.dcm", "chrGreek.dcm", "chrH31.dcm", "chrI2.dcm", "chrRuss.dcm"]


def test_character_sets_as_stated(server):
    """Section 5: names in single-byte and ISO 2022 character sets are decoded at ingest and
    answered in UTF-8 DICOM JSON; the stored file keeps its own character set."""
    for name in CHARSET_FILES:
        path = get_charset_files(name)[0]
        data = Path(path).read_bytes()
        stow(server.dicomweb, [data])
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        response = httpx.get(
            f"{server.dicomweb}/studies",
            params={"StudyInstanceUID": ds.StudyInstanceUID, "includefield": "00080005"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/dicom+json")
        (study,) = response.json()
        names = study["00100010"]["Value"][0]
        expected = ds.PatientName
        assert names["Alphabetic"] == str(expected.alphabetic), name
        if expected.ideographic:
            assert names["Ideographic"] == str(expected.ideographic), name
