"""The Native DICOM Model (PS3.19 A.1) to DICOM JSON conversion the XML form of STOW-RS uses:
values ordered by `number`, person name components, numbers by VR, sequences, bulk data and
inline binary, and refusals (DTDs and entities, other roots, bad tags)."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from tessera.storage.json_instance import InstanceNotUsable
from tessera.storage.xml_instance import native_xml_to_json

NS = "http://dicom.nema.org/PS3.19/models/NativeDICOM"


def model(body: str) -> bytes:
    return f'<?xml version="1.0"?><NativeDicomModel xmlns="{NS}">{body}</NativeDicomModel>'.encode()


def test_attributes_become_dicom_json() -> None:
    converted = native_xml_to_json(
        model(
            '<DicomAttribute tag="00100010" vr="PN" keyword="PatientName">'
            '<PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName>'
            "<GivenName>Jane</GivenName><NamePrefix>Dr</NamePrefix></Alphabetic>"
            "<Ideographic><FamilyName>山田</FamilyName></Ideographic></PersonName>"
            "</DicomAttribute>"
            '<DicomAttribute tag="00280030" vr="DS"><Value number="2">0.5</Value>'
            '<Value number="1">1.25</Value></DicomAttribute>'
            '<DicomAttribute tag="00280010" vr="US"><Value number="1">16</Value></DicomAttribute>'
            '<DicomAttribute tag="00189087" vr="FD"><Value number="1">1000.5</Value>'
            "</DicomAttribute>"
            '<DicomAttribute tag="00100030" vr="DA"/>'
            '<DicomAttribute tag="00081115" vr="SQ"><Item number="2"><DicomAttribute '
            'tag="0020000E" vr="UI"><Value number="1">1.2.2</Value></DicomAttribute></Item>'
            '<Item number="1"><DicomAttribute tag="0020000E" vr="UI"><Value number="1">1.2.1'
            "</Value></DicomAttribute></Item></DicomAttribute>"
            '<DicomAttribute tag="00420011" vr="OB"><BulkData uri="part/1"/></DicomAttribute>'
            '<DicomAttribute tag="00091010" vr="OB" privateCreator="X"><InlineBinary>AAEC'
            "</InlineBinary></DicomAttribute>"
        )
    )
    assert converted["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "Doe^Jane^^Dr", "Ideographic": "山田"}],
    }
    assert converted["00280030"]["Value"] == ["1.25", "0.5"]  # by number=, not document order
    assert converted["00280010"]["Value"] == [16]
    assert converted["00189087"]["Value"] == [1000.5]
    assert converted["00100030"] == {"vr": "DA"}
    uids = [item["0020000E"]["Value"][0] for item in converted["00081115"]["Value"]]
    assert uids == ["1.2.1", "1.2.2"]
    assert converted["00420011"] == {"vr": "OB", "BulkDataURI": "part/1"}
    assert converted["00091010"] == {"vr": "OB", "InlineBinary": "AAEC"}
    del converted["00420011"]
    dataset = Dataset.from_json(converted)
    assert str(dataset.PatientName) == "Doe^Jane^^Dr=山田"
    assert dataset[0x00091010].value == b"\x00\x01\x02"


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (b'<!DOCTYPE m [<!ENTITY a "a">]><NativeDicomModel/>', "DTDForbidden"),
        (b'<!DOCTYPE m SYSTEM "http://example.invalid/x.dtd"><NativeDicomModel/>', "DTD"),
        (b"<NativeDicomModel>", "not well-formed"),
        (b"<html/>", "not NativeDicomModel"),
        (model('<DicomAttribute tag="0010001" vr="PN"/>'), "8 hexadecimal"),
        (model('<DicomAttribute tag="00100010"/>'), "no valid vr"),
        (
            model(
                '<DicomAttribute tag="00280010" vr="US"><Value number="1">x</Value>'
                "</DicomAttribute>"
            ),
            "not a number",
        ),  # fmt: skip
        (model('<DicomAttribute tag="7FE00010" vr="OB"><BulkData/></DicomAttribute>'), "uri"),
    ],
)
def test_refused(document: bytes, says: str) -> None:
    with pytest.raises(InstanceNotUsable) as refused:
        native_xml_to_json(document)
    assert says in str(refused.value)
