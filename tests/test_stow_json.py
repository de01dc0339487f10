"""STOW-RS metadata and bulk data requests (PS3.18 §10.5, multipart/related;
type="application/dicom+json") against a real server on SQLite and PostgreSQL: a script
sends a PDF or a JPEG with its DICOM attributes; missing UIDs, Instance Number and dates are
filled and reported; the stored objects come back as sent."""

from __future__ import annotations

import io
import uuid

import httpx
import orjson
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import ServerProcess
from tests.document_files import jpeg_bytes, pdf_bytes
from tests.document_server import DATABASES, document_archive
from tests.test_documents import assert_valid_iod, new_study
from tests.wado_data import parse_multipart

REFERENCED = "00081199"
FAILED = "00081198"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'

archive = pytest.fixture(scope="module", params=DATABASES)(document_archive)


def body(metadata: list[dict], bulk: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(body, Content-Type) of a metadata and bulk data request; bulk parts are
    (Content-Location, Content-Type, bytes)."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    out.write(f"--{boundary}\r\nContent-Type: application/dicom+json\r\n\r\n".encode())
    out.write(orjson.dumps(metadata))
    for location, media_type, data in bulk:
        out.write(
            f"\r\n--{boundary}\r\nContent-Type: {media_type}\r\n"
            f"Content-Location: {location}\r\n\r\n".encode()
        )
        out.write(data)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom+json"; boundary={boundary}'
    return out.getvalue(), content_type


def post(server: ServerProcess, metadata, bulk, study: str | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    content, content_type = body(metadata, bulk)
    url = f"{server.dicomweb}/studies" + (f"/{study}" if study else "")
    return httpx.post(url, content=content, headers={"Content-Type": content_type}, timeout=60)


def value(text: str, vr: str = "LO") -> dict:
    return {"vr": vr, "Value": [text]}


def pdf_metadata(study_uid: str | None = None, **extra: dict) -> dict:
    metadata = {
        "00080016": value("1.2.840.10008.5.1.4.1.1.104.1", "UI"),
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "JSON^PATIENT"}]},
        "00100020": value("JSON-1"),
        "00100030": {"vr": "DA"},
        "00100040": {"vr": "CS"},
        "00080020": value("20240102", "DA"),
        "00080030": value("101010", "TM"),
        "00080050": {"vr": "SH"},
        "00080090": {"vr": "PN"},
        "00200010": {"vr": "SH"},
        "00080060": value("DOC", "CS"),
        "00200011": {"vr": "IS", "Value": [7]},
        "00080070": {"vr": "LO"},
        "00080064": value("WSD", "CS"),
        "0008002A": {"vr": "DT"},
        "00280301": value("YES", "CS"),
        "00420010": value("Discharge letter", "ST"),
        "0040A043": {"vr": "SQ"},
        "00420012": value("application/pdf"),
        "00420011": {"vr": "OB", "BulkDataURI": "http://client.example/pdf/1"},
    }
    if study_uid:
        metadata["0020000D"] = value(study_uid, "UI")
    metadata.update(extra)
    return metadata


def retrieve(server: ServerProcess, stored_item: dict) -> pydicom.Dataset:
    url = stored_item["00081190"]["Value"][0]
    response = httpx.get(url, headers={"Accept": MULTIPART_DICOM}, timeout=30)
    assert response.status_code == 200, response.text
    [(_, payload)] = parse_multipart(response.headers["content-type"], response.content)
    return pydicom.dcmread(io.BytesIO(payload))


def test_pdf_with_its_attributes_fills_uids_and_reports_them(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pdf = pdf_bytes()
    response = post(
        archive, [pdf_metadata()], [("http://client.example/pdf/1", "application/pdf", pdf)]
    )
    assert response.status_code == 202, response.text  # stored, with a warning
    [item] = response.json()[REFERENCED]["Value"]
    assert item["00081196"]["Value"] == [0xB300]  # coercion of data elements
    assert item["00000902"]["Value"] == [
        "filled: Study UID, Series UID, SOP UID, Instance Number, dates"
    ]
    warning = response.headers["warning"]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber"):
        assert keyword in warning
    dataset = retrieve(archive, item)
    assert dataset.SOPInstanceUID == item["00081155"]["Value"][0]
    assert bytes(dataset.EncapsulatedDocument)[: len(pdf)] == pdf
    assert dataset.InstanceNumber == 1 and dataset.SeriesNumber == 7
    assert str(dataset.PatientName) == "JSON^PATIENT"
    assert_valid_iod(dataset, tmp_path)


def test_jpeg_pixel_data_into_an_existing_study(archive) -> None:  # type: ignore[no-untyped-def]
    spec = new_study(archive)
    jpeg = jpeg_bytes(32, 24)
    sop_uid, series_uid = generate_uid(), generate_uid()
    metadata = {
        "00080016": value("1.2.840.10008.5.1.4.1.1.7", "UI"),  # Secondary Capture
        "00080018": value(sop_uid, "UI"),
        "0020000E": value(series_uid, "UI"),
        "00200013": {"vr": "IS", "Value": [3]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOCUMENT^PATIENT"}]},
        "00100020": value("DOC-1"),
        "00080060": value("OT", "CS"),
        "00080064": value("WSD", "CS"),
        "00280002": {"vr": "US", "Value": [3]},
        "00280004": value("YBR_FULL_422", "CS"),
        "00280006": {"vr": "US", "Value": [0]},
        "00280010": {"vr": "US", "Value": [24]},
        "00280011": {"vr": "US", "Value": [32]},
        "00280100": {"vr": "US", "Value": [8]},
        "00280101": {"vr": "US", "Value": [8]},
        "00280102": {"vr": "US", "Value": [7]},
        "00280103": {"vr": "US", "Value": [0]},
        "7FE00010": {"vr": "OB", "BulkDataURI": "pixels"},
    }
    response = post(
        archive, [metadata], [("pixels", "image/jpeg", jpeg)], study=spec.study_instance_uid
    )
    assert response.status_code == 202, response.text
    [item] = response.json()[REFERENCED]["Value"]
    assert item["00081155"]["Value"] == [sop_uid]
    dataset = retrieve(archive, item)
    assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert dataset.StudyInstanceUID == spec.study_instance_uid  # from the path
    assert dataset.InstanceNumber == 3  # as sent
    assert dataset.pixel_array.shape == (24, 32, 3)
    series = httpx.get(f"{archive.dicomweb}/studies/{spec.study_instance_uid}/series").json()
    assert series_uid in {s["0020000E"]["Value"][0] for s in series}


def test_two_instances_without_series_share_one_new_series(archive) -> None:  # type: ignore[no-untyped-def]
    uri = "http://client.example/pdf/1"
    response = post(
        archive, [pdf_metadata(), pdf_metadata()], [(uri, "application/pdf", pdf_bytes())]
    )
    assert response.status_code == 202, response.text
    items = response.json()[REFERENCED]["Value"]
    urls = [i["00081190"]["Value"][0] for i in items]
    series = {u.split("/series/")[1].split("/")[0] for u in urls}
    studies = {u.split("/studies/")[1].split("/")[0] for u in urls}
    assert len(items) == 2 and len(series) == 1 and len(studies) == 1
    numbers = sorted(retrieve(archive, i).InstanceNumber for i in items)
    assert numbers == [1, 2]


PDF_PART = [("http://client.example/pdf/1", "application/pdf", b"%PDF-1.4\n")]


@pytest.mark.parametrize(
    ("metadata", "bulk", "status", "reason"),
    [
        ([pdf_metadata()], [], 400, 0xC000),  # the BulkDataURI names no part
        ([pdf_metadata(**{"00280010": {"vr": "US", "Value": ["abc"]}})], PDF_PART, 400, 0xC000),
        ([pdf_metadata(**{"00081111": {"vr": "SQ", "Value": ["x"]}})], PDF_PART, 400, 0xC000),
        (
            [pdf_metadata(**{"00080016": {"vr": "UI"}, "00420012": value("text/plain")})],
            [("http://client.example/pdf/1", "application/pdf", b"%PDF-1.4")],
            400,
            0xA900,
        ),
    ],
)
def test_unusable_metadata_fails_per_instance(archive, metadata, bulk, status, reason) -> None:  # type: ignore[no-untyped-def]
    response = post(archive, metadata, bulk)
    assert response.status_code == status, response.text
    [item] = response.json()[FAILED]["Value"]
    assert item["00081197"]["Value"] == [reason]


def test_malformed_requests(archive) -> None:  # type: ignore[no-untyped-def]
    content_type = 'multipart/related; type="application/dicom+json"; boundary=b'
    url = f"{archive.dicomweb}/studies"
    no_metadata = b"--b\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--b--\r\n"
    response = httpx.post(url, content=no_metadata, headers={"Content-Type": content_type})
    assert response.status_code == 400 and "metadata" in response.json()["detail"]
    bad_json = b"--b\r\nContent-Type: application/dicom+json\r\n\r\n[{\r\n--b--\r\n"
    response = httpx.post(url, content=bad_json, headers={"Content-Type": content_type})
    assert response.status_code == 400
    truncated = b"--b\r\nContent-Type: application/dicom+json\r\n\r\n[]"
    response = httpx.post(url, content=truncated, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert archive.alive()


# The XML form (type="application/dicom+xml"): one Native DICOM Model document per instance.


def native_xml(metadata: dict) -> bytes:
    """The Native DICOM Model (PS3.19 A.1) of a DICOM JSON object, written here by hand."""
    from xml.sax.saxutils import escape, quoteattr

    def attributes(obj: dict) -> str:
        out = []
        for tag, attribute in obj.items():
            vr = attribute["vr"]
            inner = ""
            if "BulkDataURI" in attribute:
                inner = f"<BulkData uri={quoteattr(attribute['BulkDataURI'])}/>"
            for n, v in enumerate(attribute.get("Value", []), start=1):
                if vr == "SQ":
                    inner += f'<Item number="{n}">{attributes(v)}</Item>'
                elif vr == "PN":
                    family, _, given = v["Alphabetic"].partition("^")
                    inner += (
                        f'<PersonName number="{n}"><Alphabetic><FamilyName>{escape(family)}'
                        f"</FamilyName><GivenName>{escape(given)}</GivenName></Alphabetic>"
                        "</PersonName>"
                    )
                else:
                    inner += f'<Value number="{n}">{escape(str(v))}</Value>'
            out.append(f'<DicomAttribute tag="{tag}" vr="{vr}">{inner}</DicomAttribute>')
        return "".join(out)

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">'
        f"{attributes(metadata)}</NativeDicomModel>"
    ).encode()


def post_xml(
    server: ServerProcess, documents: list[bytes], bulk: list[tuple[str, str, bytes]]
) -> httpx.Response:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for document in documents:
        out.write(f"--{boundary}\r\nContent-Type: application/dicom+xml\r\n\r\n".encode())
        out.write(document + b"\r\n")
    for location, media_type, data in bulk:
        out.write(
            f"--{boundary}\r\nContent-Type: {media_type}\r\n"
            f"Content-Location: {location}\r\n\r\n".encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom+xml"; boundary={boundary}'
    return httpx.post(
        f"{server.dicomweb}/studies",
        content=out.getvalue(),
        headers={"Content-Type": content_type},
        timeout=60,
    )


def test_xml_metadata_and_bulk_data(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pdf = pdf_bytes(text="XML form")
    study = generate_uid()
    referenced = generate_uid()
    metadata = pdf_metadata(
        study,
        **{
            "00081115": {
                "vr": "SQ",
                "Value": [{"0020000E": value(referenced, "UI")}],
            },
            "00280030": {"vr": "DS", "Value": ["1.50", "0.5"]},
        },
    )
    response = post_xml(
        archive, [native_xml(metadata)], [("http://client.example/pdf/1", "application/pdf", pdf)]
    )
    assert response.status_code == 202, response.text  # stored; UIDs filled (warning)
    [item] = response.json()[REFERENCED]["Value"]
    dataset = retrieve(archive, item)
    assert dataset.StudyInstanceUID == study
    assert bytes(dataset.EncapsulatedDocument)[: len(pdf)] == pdf
    assert str(dataset.PatientName) == "JSON^PATIENT" and dataset.SeriesNumber == 7
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == referenced
    assert [float(v) for v in dataset[0x00280030].value] == [1.5, 0.5]  # order by number=
    assert_valid_iod(dataset, tmp_path)


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (b"<NativeDicomModel><DicomAttribute", "not well-formed"),
        (
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><NativeDicomModel>&a;</NativeDicomModel>',
            "DTDForbidden",
        ),
        (b"<NotNative/>", "not NativeDicomModel"),
        (b'<NativeDicomModel><DicomAttribute tag="0010" vr="PN"/></NativeDicomModel>', "tag"),
    ],
    ids=["truncated", "dtd", "root", "tag"],
)
def test_bad_xml_metadata_is_refused_with_the_reason(archive, document: bytes, says: str) -> None:  # type: ignore[no-untyped-def]
    response = post_xml(archive, [document], [])
    assert response.status_code == 400, response.text  # as every instance cannot be understood
    [failed] = response.json()[FAILED]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert says in response.text
