"""C-FIND SCP (Patient Root and Study Root): the identifier becomes the same typed Query as
a QIDO-RS request and runs through the same scoped engine (tessera/index/query*.py); each
match is sent as a pending response as soon as it is read, and C-CANCEL stops the stream."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom import evt
from pynetdicom.association import Association
from sqlalchemy import Connection

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.index.key_values import empty_value_list, integer_range_problem
from tessera.index.query import Level, Query, QueryError
from tessera.index.query_sql import iter_query
from tessera.scope import Scope
from tessera.scp import audit, statuses
from tessera.scp.association import caller_of
from tessera.scp.identifier import (
    IdentifierError,
    declare_character_set,
    decode_identifier,
    query_level,
)

log = logging.getLogger(__name__)

QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005
RETRIEVE_AE_TITLE = 0x00080054
# The unique keys each level returns whatever the request asks (PS3.4 C.4.1.2.1).
_UNIQUE_KEYS = {
    "PATIENT": (0x00100020,),
    "STUDY": (0x0020000D,),
    "SERIES": (0x0020000D, 0x0020000E),
    "IMAGE": (0x0020000D, 0x0020000E, 0x00080018),
}
_NOT_KEYS = {QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, RETRIEVE_AE_TITLE}


def _raw_value(element: DataElement) -> str:
    """A key's value as the DICOM string form the query engine reads (PS3.4 C.2.2.2)."""
    value = element.value
    if value is None or element.VR == "SQ":
        return ""
    if element.VM > 1:
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        # A binary or unknown-VR key (e.g. a private tag in an implicit VR identifier)
        # cannot be matched: it is a return key (PS3.4 C.4.1.1.3.1 lets the SCP skip it).
        return ""
    return str(value)


def build_query(identifier: Dataset, level: str) -> tuple[Query, list[tuple[int, str]]]:
    """The Query for an identifier, and the (tag, VR) keys every response carries."""
    query = Query(Level.from_dicom(level), include_defaults=False)
    keys: list[tuple[int, str]] = []
    for element in identifier:
        tag = int(element.tag)
        if tag in _NOT_KEYS or element.tag.element == 0 or element.tag.group == 0x0002:
            continue
        if element.VR == "SQ" and len(element.value) > 0:
            # Sequence matching is not supported; the sequence is still returned.
            query.add_key(tag, "", unsupported="return")
        else:
            value = _raw_value(element)
            if empty_value_list(value):
                raise IdentifierError(f"{element.keyword or tag} holds an empty value list")
            problem = integer_range_problem(element.VR, value)
            if problem:
                raise IdentifierError(f"{element.keyword or tag}: {problem}")
            try:
                query.add_key(tag, value, unsupported="return")
            except QueryError as exc:
                raise IdentifierError(str(exc)) from exc
        keys.append((tag, element.VR))
    for tag in _UNIQUE_KEYS[level]:
        if all(tag != key for key, _vr in keys):
            query.add_key(tag, "")
            keys.append((tag, dictionary_VR(tag)))
    return query, keys


def _response(
    match: dict, keys: list[tuple[int, str]], level: str, called_ae_title: str, retrieve: bool
) -> Dataset:
    found = Dataset.from_json(match)
    response = Dataset()
    response.QueryRetrieveLevel = level
    for tag, vr in keys:
        if tag in found:
            response[tag] = found[tag]
        else:
            response.add_new(Tag(tag), vr, [] if vr == "SQ" else None)
    if retrieve:
        response.RetrieveAETitle = called_ae_title
    declare_character_set(response)
    return response


def handle_find(event: evt.Event, archive: Archive) -> Iterator:
    caller = caller_of(event.assoc)
    if not caller.scope.can(permissions.READ):
        audit.record(archive, event.assoc, caller, "query", "denied", "C-FIND")
        yield statuses.status_dataset(statuses.NOT_AUTHORIZED, "this AE may not query"), None
        return
    try:
        identifier = decode_identifier(event)
        level = query_level(identifier, str(event.request.AffectedSOPClassUID))
        query, keys = build_query(identifier, level)
    except IdentifierError as exc:
        audit.record(
            archive, event.assoc, caller, "query", "failed", "C-FIND", {"reason": str(exc)}
        )
        yield statuses.status_dataset(statuses.IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    audit.record(
        archive, event.assoc, caller, "query", "ok", f"C-FIND {level}", _audited_keys(identifier)
    )
    retrieve = RETRIEVE_AE_TITLE in identifier
    matches = 0
    with archive.database.read() as conn:
        for match in iter_query(conn, caller.scope, query):
            if event.is_cancelled:
                yield statuses.CANCEL, None
                return
            matches += 1
            wait_for_peer(event.assoc)
            yield (
                statuses.PENDING,
                _response(match, keys, level, caller.called_ae_title, retrieve),
            )
    log.info(
        "C-FIND",
        extra={"calling_ae_title": caller.calling_ae_title, "level": level, "matches": matches},
    )


def studies_of_patient(conn: Connection, scope: Scope, patient_id: str) -> list[str]:
    """Study Instance UIDs of one Patient ID, through the same scoped query engine."""
    query = Query(Level.STUDY, include_defaults=False)
    query.add_key("PatientID", patient_id)
    query.add_key("StudyInstanceUID", "")
    uids = []
    for match in iter_query(conn, scope, query):
        value = match.get("0020000D", {}).get("Value") or []
        if value:
            uids.append(str(value[0]))
    return uids


def _audited_keys(identifier: Dataset) -> dict[str, str]:
    """The matching keys the peer sent (those with a value), as the audit trail records a
    QIDO-RS query string."""
    keys = {}
    for element in identifier:
        if element.VR == "SQ" or element.value in (None, "", b""):
            continue
        keys[element.keyword or f"{element.tag:08X}"] = str(element.value)[:128]
    return keys


# Responses queued for the network but not yet sent. pynetdicom's DUL thread both sends them
# and reads what the peer sends, so a handler that races ahead queues every match in memory
# and the peer's C-CANCEL is only read after all were sent.
_MAX_QUEUED_RESPONSES = 16


def wait_for_peer(assoc: Association) -> None:
    queued = assoc.dul.to_provider_queue
    while queued.qsize() > _MAX_QUEUED_RESPONSES and assoc.is_established:
        time.sleep(0.0005)
