"""Modality Worklist C-FIND SCP (Modality Worklist Information Model - FIND, PS3.4 Annex K).

The identifier becomes a `WorklistQuery` (tessera/index/worklist.py), run under the calling
peer's Scope: its tenant (the called AE title) and the sources it may query. One pending
response per scheduled procedure step, carrying exactly the keys asked for (unknown ones
empty), the Scheduled Procedure Step Sequence with one item.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

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
    WorklistKeyError,
    WorklistQuery,
    iter_worklist,
)
from tessera.index.worklist_values import ORDER_VALUES, STEP_VALUES
from tessera.scp import audit, statuses
from tessera.scp.association import caller_of
from tessera.scp.find import wait_for_peer
from tessera.scp.identifier import IdentifierError, declare_character_set, decode_identifier

log = logging.getLogger(__name__)

SPECIFIC_CHARACTER_SET = 0x00080005
SPS_SEQUENCE = "ScheduledProcedureStepSequence"


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
    declare_character_set(response)
    return response


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
