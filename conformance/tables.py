"""The tables of the Conformance Statement that are read off the code: the DICOMweb resources
the application routes, the frame media types and transfer syntaxes WADO-RS negotiates, the
transfer syntaxes the codecs decode and produce, the QIDO-RS / C-FIND attributes, the DIMSE presentation contexts the SCP accepts.

In conformance/CONFORMANCE.md each sits between `<!-- table:NAME -->` and
`<!-- end:NAME -->`; conformance/test_conformance_statement.py fails when one differs from
the code. After changing the code, rewrite them with:

    python -m conformance.tables --write
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from pydicom.uid import UID

STATEMENT = Path(__file__).resolve().parent / "CONFORMANCE.md"


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name != uid else "(private or unknown)"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


_WORKITEM_TRANSACTIONS = {
    ("GET", "/workitems"): "Search Workitems (UPS-RS)",
    ("POST", "/workitems"): "Create Workitem (UPS-RS)",
    ("GET", "/workitems/{}"): "Retrieve Workitem (UPS-RS)",
    ("POST", "/workitems/{}"): "Update Workitem (UPS-RS)",
    ("PUT", "/workitems/{}/state"): "Change Workitem State (UPS-RS)",
    ("POST", "/workitems/{}/cancelrequest"): "Request Cancellation (UPS-RS)",
    ("POST", "/workitems/{}/subscribers/{}"): "Subscribe (UPS-RS)",
    ("DELETE", "/workitems/{}/subscribers/{}"): "Unsubscribe (UPS-RS)",
    ("POST", "/workitems/{}/subscribers/{}/suspend"): "Suspend Global Subscription (UPS-RS)",
    ("WebSocket", "/subscribers/{}"): "Open Notification Connection (UPS-RS event reports)",
}


def _transaction(path: str, methods: set[str], module: str) -> str:
    if module.endswith((".workitems", ".ups_subscriptions")):
        return _WORKITEM_TRANSACTIONS[(next(iter(methods)), path)]
    if module.endswith(".documents"):
        return "Store a document (Tessera; docs/documents.md)"
    if "POST" in methods:
        return "Store (STOW-RS)"
    if module.endswith("qido"):
        return "Search (QIDO-RS)"
    if module.endswith("wado_uri"):
        return "WADO-URI"
    if path.endswith("/metadata"):
        return "Retrieve metadata (WADO-RS)"
    if path.endswith(("/rendered", "/thumbnail")):
        return "Retrieve rendered (WADO-RS)" if path.endswith("/rendered") else "Thumbnail"
    if path.endswith("/frames/{}"):
        return "Retrieve frames (WADO-RS)"
    if "/bulkdata/" in path:
        return "Retrieve bulk data (WADO-RS)"
    return "Retrieve instances (WADO-RS)"


def resources() -> str:
    """Every route under a tenant's DICOMweb root, as the application mounts it."""
    from tessera.dicomweb.app import dicomweb_routes

    rows = []
    for route in dicomweb_routes():
        # Starlette adds HEAD to every GET; a WebSocket route has no methods.
        methods = set(getattr(route, "methods", None) or {"WebSocket"}) - {"HEAD"}
        path = re.sub(r"\{[^}]+\}", "{}", route.path)
        module = getattr(route.endpoint, "__module__", "")
        rows.append(
            [", ".join(sorted(methods)), f"`{{root}}{path}`", _transaction(path, methods, module)]
        )
    return _table(["Method", "Resource (`{}`: a UID, frame list or tag)", "Transaction"], rows)


def frame_media_types() -> str:
    """The media types of frames and the transfer syntaxes each may carry (WADO-RS)."""
    from tessera.dicomweb.negotiation import PIXEL_MEDIA_TYPES
    from tessera.storage.syntaxes import NATIVE_LITTLE_ENDIAN

    rows = [
        ["`application/octet-stream`", f"`{uid}` {_uid_name(uid)}"]
        for uid in sorted(NATIVE_LITTLE_ENDIAN)
    ]
    for media_type, syntaxes in PIXEL_MEDIA_TYPES.items():
        rows += [[f"`{media_type}`", f"`{uid}` {_uid_name(uid)}"] for uid in syntaxes]
    return _table(["Frame media type", "Transfer syntax"], rows)


def retrieval_transfer_syntaxes() -> str:
    """What the codecs decode and produce (tessera/storage/syntaxes.py, transcode.py)."""
    from tessera.storage import syntaxes

    def lossy(uid: str) -> str:
        if uid in syntaxes.ALWAYS_LOSSY:
            return "always"
        return "per codestream" if uid in syntaxes.MAYBE_LOSSY else "no"

    rows = [
        [
            f"`{uid}` {_uid_name(uid)}",
            "yes" if syntaxes.can_decode(uid) else "no",
            "yes" if syntaxes.can_encode_frames(uid) else "no",
            "yes" if syntaxes.can_encode(uid) else "no",
            lossy(uid),
        ]
        for uid in syntaxes.LISTED_SYNTAXES
    ]
    header = ["Transfer syntax", "Decoded", "Produced (frames)", "Produced (instances)", "Lossy"]
    return _table(header, rows)


def query_attributes() -> str:
    """The attributes QIDO-RS and C-FIND match and return (one registry serves both)."""
    from tessera.index.query_attributes import (
        ATTRIBUTES,
        DEFAULT_RETURN,
        INSTANCE_AVAILABILITY,
        RETRIEVE_URL,
        SPECIFIC_CHARACTER_SET,
    )

    def default_levels(keyword: str) -> str:
        levels = [level.name.lower() for level, names in DEFAULT_RETURN.items() if keyword in names]
        return ", ".join(levels) or "on request (`includefield`)"

    rows = []
    for attribute in (*ATTRIBUTES, INSTANCE_AVAILABILITY, RETRIEVE_URL, SPECIFIC_CHARACTER_SET):
        tag = f"({attribute.tag >> 16:04X},{attribute.tag & 0xFFFF:04X})"
        rows.append(
            [
                attribute.keyword,
                tag,
                attribute.vr,
                attribute.level.name.lower(),
                "yes" if attribute.matchable else "no (returned only)",
                default_levels(attribute.keyword),
            ]
        )
    return _table(
        ["Attribute", "Tag", "VR", "Level", "Matching key", "Returned by default at"], rows
    )


def dimse_contexts() -> str:
    """The presentation contexts the DIMSE SCP accepts besides storage (which accepts every
    storage SOP class with the transfer syntax the peer proposes first)."""
    from pynetdicom.sop_class import Verification

    from tessera.scp.server import (
        NON_STORAGE_TRANSFER_SYNTAXES,
        QUERY_RETRIEVE_SOP_CLASSES,
        WORKFLOW_SOP_CLASSES,
    )

    syntaxes = "<br>".join(f"`{uid}` {_uid_name(uid)}" for uid in NON_STORAGE_TRANSFER_SYNTAXES)
    rows = [
        [_uid_name(sop_class), f"`{sop_class}`", "SCP", syntaxes]
        for sop_class in (Verification, *QUERY_RETRIEVE_SOP_CLASSES, *WORKFLOW_SOP_CLASSES)
    ]
    return _table(["SOP class", "UID", "Role", "Transfer syntaxes"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "dicomweb-resources": resources,
    "frame-media-types": frame_media_types,
    "retrieval-transfer-syntaxes": retrieval_transfer_syntaxes,
    "query-attributes": query_attributes,
    "dimse-contexts": dimse_contexts,
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- table:{name} -->", f"<!-- end:{name} -->"


def table_in(text: str, name: str) -> str | None:
    """The table between the markers of `name` in the statement (None: no markers)."""
    start, end = markers(name)
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def rewrite(text: str) -> str:
    for name, build in TABLES.items():
        start, end = markers(name)
        if table_in(text, name) is None:
            continue
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = f"{before}{start}\n{build()}\n{end}{after}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite them in CONFORMANCE.md")
    args = parser.parse_args()
    if args.write:
        STATEMENT.write_text(rewrite(STATEMENT.read_text()))
    else:
        for name, build in TABLES.items():
            print(f"{markers(name)[0]}\n{build()}\n{markers(name)[1]}\n")


if __name__ == "__main__":
    main()
