"""Modality Worklist C-FIND SCP (Modality Worklist Information Model - FIND, PS3.4 Annex K).

The identifier becomes a `WorklistQuery` (tessera/index/worklist.py), run under the calling
peer's Scope: its tenant (the called AE title) and the sources it may query. One pending
response per scheduled procedure step, carrying exactly the keys asked for (unknown ones
empty), the Scheduled Procedure Step Sequence with one item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import date, time

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pynetdicom import evt
from sqlalchemy import RowMapping

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.index.worklist import (
    ORDER_KEYS,
    STEP_KEYS,
    STEP_STATUS,
    WorklistKeyError,
    WorklistQuery,
    iter_worklist,
)
from tessera.scp import audit, statuses
from tessera.scp.association import caller_of
from tessera.scp.find import wait_for_peer
from tessera.scp.identifier import IdentifierError, decode_identifier

log = logging.getLogger(__name__)

SPECIFIC_CHARACTER_SET = 0x00080005
SPS_SEQUENCE = "ScheduledProcedureStepSequence"


def _da(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _tm(value: time | None) -> str:
    return value.strftime("%H%M%S") if value else ""


def _code_item(row: RowMapping) -> list[Dataset]:
    if not row["requested_procedure_code_value"]:
        return []
    item = Dataset()
    item.CodeValue = row["requested_procedure_code_value"]
    item.CodingSchemeDesignator = row["requested_procedure_coding_scheme"]
    item.CodeMeaning = row["requested_procedure_code_meaning"]
    return [item]


def _issuer_item(row: RowMapping) -> list[Dataset]:
    if not row["issuer_of_accession_number"]:
        return []
    item = Dataset()
    item.LocalNamespaceEntityID = row["issuer_of_accession_number"]
    return [item]


ORDER_VALUES: dict[str, Callable[[RowMapping], object]] = {
    "PatientName": lambda r: r["patient_name"],
    "PatientID": lambda r: r["patient_id"],
    "IssuerOfPatientID": lambda r: r["issuer_of_patient_id"],
    "PatientBirthDate": lambda r: _da(r["patient_birth_date"]),
    "PatientSex": lambda r: r["patient_sex"],
    "AccessionNumber": lambda r: r["accession_number"],
    "IssuerOfAccessionNumberSequence": _issuer_item,
    "ReferringPhysicianName": lambda r: r["referring_physician_name"],
    "RequestedProcedureID": lambda r: r["requested_procedure_id"],
    "RequestedProcedureDescription": lambda r: r["requested_procedure_description"],
    "RequestedProcedureCodeSequence": _code_item,
    "RequestedProcedurePriority": lambda r: r["priority"],
    "ReasonForTheRequestedProcedure": lambda r: r["reason_for_requested_procedure"],
    "StudyInstanceUID": lambda r: r["study_instance_uid"],
}
STEP_VALUES: dict[str, Callable[[RowMapping], object]] = {
    "ScheduledStationAETitle": lambda r: r["sps_scheduled_station_ae_title"],
    "ScheduledProcedureStepStartDate": lambda r: _da(r["sps_start_date"]),
    "ScheduledProcedureStepStartTime": lambda r: _tm(r["sps_start_time"]),
    "Modality": lambda r: r["sps_modality"],
    "ScheduledPerformingPhysicianName": lambda r: r["sps_scheduled_performing_physician_name"],
    "ScheduledProcedureStepDescription": lambda r: r["sps_description"],
    "ScheduledStationName": lambda r: r["sps_scheduled_station_name"],
    "ScheduledProcedureStepID": lambda r: r["sps_scheduled_procedure_step_id"],
    "ScheduledProcedureStepStatus": lambda r: STEP_STATUS.get(r["status"], ""),
}


def _value(element) -> str:
    value = element.value
    if value is None or isinstance(value, bytes):
        return ""
    if element.VM > 1:
        return "\\".join(str(v) for v in value)
    return str(value)


def _is_key(element) -> bool:
    tag = element.tag
    return not (int(tag) == SPECIFIC_CHARACTER_SET or tag.element == 0 or tag.group == 0x0002)


def build_worklist_query(
    identifier: Dataset, limit: int
) -> tuple[WorklistQuery, list[tuple[int, str]], list[tuple[int, str]] | None]:
    """The query, the top-level keys to return, and the step keys to return (None: the
    request's sequence had no item, so every step attribute is returned)."""
    query = WorklistQuery(limit=limit)
    keys: list[tuple[int, str]] = []
    step_keys: list[tuple[int, str]] | None = None
    for element in identifier:
        if not _is_key(element):
            continue
        keys.append((int(element.tag), element.VR))
        keyword = element.keyword
        if keyword == SPS_SEQUENCE:
            items = element.value or []
            if len(items) > 1:
                raise IdentifierError("Scheduled Procedure Step Sequence has more than one item")
            step_keys = [] if items else None
            for item_element in items[0] if items else []:
                if not _is_key(item_element):
                    continue
                step_keys.append((int(item_element.tag), item_element.VR))  # type: ignore[union-attr]
                _add_step_key(query, item_element.keyword, _value(item_element))
        elif keyword in ORDER_KEYS and element.VR != "SQ":
            value = _value(element).strip()
            if value:
                query.order_keys[keyword] = value
    return query, keys, step_keys


def _add_step_key(query: WorklistQuery, keyword: str, value: str) -> None:
    value = value.strip()
    if not value:
        return
    if keyword == "ScheduledProcedureStepStartDate":
        query.start_date = value
    elif keyword == "ScheduledProcedureStepStartTime":
        query.start_time = value
    elif keyword == "ScheduledProcedureStepStatus":
        query.step_status = value
    elif keyword in STEP_KEYS:
        query.step_keys[keyword] = value


def _put(dataset: Dataset, tag: int, vr: str, value: object) -> None:
    if vr == "SQ":
        dataset.add_new(Tag(tag), "SQ", Sequence(value if isinstance(value, list) else []))
    else:
        dataset.add_new(Tag(tag), vr, value if value not in (None, "") else None)


Plan = list[tuple[int, str, object]]


def response_plan(keys: list[tuple[int, str]], step_keys: list[tuple[int, str]] | None) -> Plan:
    """(tag, VR, how to get the value) for every key to return, worked out once per request:
    a value function, None (returned empty), or for the step sequence the step's own plan."""
    plan: Plan = []
    for tag, vr in keys:
        keyword = keyword_for_tag(tag)
        if keyword == SPS_SEQUENCE:
            wanted = step_keys
            if wanted is None:
                wanted = [
                    (int(Tag(name)), dictionary_VR(name))
                    for name in sorted(STEP_VALUES, key=lambda n: int(Tag(n)))
                ]
            step_plan = [(t, v, STEP_VALUES.get(keyword_for_tag(t))) for t, v in wanted]
            plan.append((tag, "SQ", step_plan))
        else:
            plan.append((tag, vr, ORDER_VALUES.get(keyword)))
    return plan


def _fill(dataset: Dataset, row: RowMapping, plan: Plan) -> None:
    for tag, vr, source in plan:
        if isinstance(source, list):
            item = Dataset()
            _fill(item, row, source)
            dataset.add_new(Tag(tag), "SQ", Sequence([item]))
        else:
            _put(dataset, tag, vr, source(row) if source else None)  # type: ignore[operator]


def worklist_item(row: RowMapping, plan: Plan) -> Dataset:
    response = Dataset()
    _fill(response, row, plan)
    if not _ascii(response):
        response.SpecificCharacterSet = "ISO_IR 192"
    return response


def _ascii(dataset: Dataset) -> bool:
    for element in dataset.iterall():
        if element.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") and element.value:
            if not str(element.value).isascii():
                return False
    return True


def handle_worklist_find(event: evt.Event, archive: Archive) -> Iterator:
    caller = caller_of(event.assoc)
    if not caller.scope.can(permissions.READ):
        audit.record(archive, event.assoc, caller, "query", "denied", "C-FIND MWL")
        yield statuses.status_dataset(statuses.NOT_AUTHORIZED, "this AE may not query"), None
        return
    try:
        identifier = decode_identifier(event)
        query, keys, step_keys = build_worklist_query(identifier, archive.settings.qido_max_results)
        plan = response_plan(keys, step_keys)
        with archive.database.read() as conn:
            # Parse every range before the first response (a bad key is one failure status).
            rows = iter_worklist(conn, caller.scope, query)
            first = next(rows, None)
            audit.record(
                archive,
                event.assoc,
                caller,
                "query",
                "ok",
                "C-FIND MWL",
                {
                    **query.order_keys,
                    **query.step_keys,
                    **(
                        {"ScheduledProcedureStepStartDate": query.start_date}
                        if query.start_date
                        else {}
                    ),
                },
            )
            matches = 0
            row = first
            while row is not None:
                if event.is_cancelled:
                    yield statuses.CANCEL, None
                    return
                matches += 1
                wait_for_peer(event.assoc)
                yield statuses.PENDING, worklist_item(row, plan)
                row = next(rows, None)
    except (IdentifierError, WorklistKeyError) as exc:
        audit.record(
            archive, event.assoc, caller, "query", "failed", "C-FIND MWL", {"reason": str(exc)}
        )
        yield statuses.status_dataset(statuses.IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
        return
    log.info("C-FIND MWL", extra={"calling_ae_title": caller.calling_ae_title, "matches": matches})
