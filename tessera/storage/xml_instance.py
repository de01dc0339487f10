"""The Native DICOM Model (PS3.19 Annex A, `application/dicom+xml`) of one instance, turned
into the DICOM JSON Model (PS3.18 Annex F) that tessera/storage/json_instance.py builds
instances from: STOW-RS takes the XML form of "metadata and bulk data" through the same path
as the JSON form.

    <NativeDicomModel>
      <DicomAttribute tag="00100010" vr="PN" keyword="PatientName">
        <PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName>...</Alphabetic></PersonName>
      </DicomAttribute>
      <DicomAttribute tag="7FE00010" vr="OB"><BulkData uri="..."/></DicomAttribute>
      <DicomAttribute tag="00081115" vr="SQ"><Item number="1"><DicomAttribute .../></Item></DicomAttribute>
    </NativeDicomModel>

Values are ordered by their `number` attribute. `BulkData` `uri` (or `uuid`) becomes a
BulkDataURI, resolved like the JSON form's (Content-Location, or `cid:` + Content-ID).
Documents with a DTD or entity declarations are refused (defusedxml), so no entity expansion
or external fetch can happen.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from tessera.storage.json_instance import InstanceNotUsable

_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_INTEGER_VRS = frozenset({"SL", "SS", "UL", "US", "SV", "UV"})
_FLOAT_VRS = frozenset({"FL", "FD"})
_NAME_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def native_xml_to_json(raw: bytes) -> dict[str, Any]:
    """One instance's DICOM JSON object from its Native DICOM Model document."""
    try:
        root = safe_xml.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InstanceNotUsable(f"the XML is refused: {exc.__class__.__name__}") from exc
    except safe_xml.ParseError as exc:
        raise InstanceNotUsable(f"the XML is not well-formed: {exc}") from exc
    if _local(root.tag) != "NativeDicomModel":
        raise InstanceNotUsable(f"the XML root is {_local(root.tag)!r}, not NativeDicomModel")
    return _attributes(root)


def _local(tag: str) -> str:
    """The element name without its namespace (`{http://dicom.nema.org/PS3.19/models/NativeDICOM}`)."""
    return tag.rsplit("}", 1)[-1]


def _attributes(parent: Element) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for element in parent:
        if _local(element.tag) != "DicomAttribute":
            continue
        tag = element.get("tag", "")
        vr = element.get("vr", "")
        if not _TAG.match(tag):
            raise InstanceNotUsable(f"DicomAttribute tag {tag!r} is not 8 hexadecimal digits")
        if not re.fullmatch(r"[A-Z]{2}", vr):
            raise InstanceNotUsable(f"DicomAttribute {tag} has no valid vr ({vr!r})")
        result[tag.upper()] = _attribute(tag.upper(), vr, element)
    return result


def _numbered(element: Element, name: str) -> list[Element]:
    children = [child for child in element if _local(child.tag) == name]

    def number(child: Element) -> int:
        try:
            return int(child.get("number", "0"))
        except ValueError as exc:
            raise InstanceNotUsable(f"{name} number {child.get('number')!r}") from exc

    return sorted(children, key=number)


def _attribute(tag: str, vr: str, element: Element) -> dict[str, Any]:
    attribute: dict[str, Any] = {"vr": vr}
    for child in element:
        kind = _local(child.tag)
        if kind == "BulkData":
            uri = child.get("uri") or child.get("uuid")
            if not uri:
                raise InstanceNotUsable(f"BulkData of {tag} has neither uri nor uuid")
            attribute["BulkDataURI"] = uri
            return attribute
        if kind == "InlineBinary":
            attribute["InlineBinary"] = (child.text or "").strip()
            return attribute
    if vr == "SQ":
        items = [_attributes(item) for item in _numbered(element, "Item")]
        if items:
            attribute["Value"] = items
        return attribute
    if vr == "PN":
        names = [_person_name(name) for name in _numbered(element, "PersonName")]
        if names:
            attribute["Value"] = names
        return attribute
    values = [_value(tag, vr, value.text) for value in _numbered(element, "Value")]
    if values:
        attribute["Value"] = values
    return attribute


def _value(tag: str, vr: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        if vr in _INTEGER_VRS:
            return int(text.strip())
        if vr in _FLOAT_VRS:
            return float(text.strip())
    except ValueError as exc:
        raise InstanceNotUsable(f"{tag} ({vr}) value {text!r} is not a number") from exc
    return text


def _person_name(element: Element) -> dict[str, str]:
    name: dict[str, str] = {}
    for group in _NAME_GROUPS:
        found = [child for child in element if _local(child.tag) == group]
        if not found:
            continue
        parts = {_local(child.tag): child.text or "" for child in found[0]}
        components = [parts.get(part, "") for part in _NAME_PARTS]
        while components and not components[-1]:
            components.pop()
        name[group] = "^".join(components)
    return name
