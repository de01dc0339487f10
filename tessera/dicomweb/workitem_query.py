"""A Search Workitems query string (PS3.18 §11.9, QIDO-RS rules) -> a `WorklistQuery`.

The matching keys are the Modality Worklist's, named as UPS attributes (a keyword or a tag,
`.` between a sequence and an attribute in its item), plus the MWL keywords themselves
(ScheduledStationAETitle, ScheduledStationName, Modality, AccessionNumber). Matching is the
worklist's (`tessera.index.worklist`): wildcards and case-insensitive person names, value
lists for UI and CS (comma-separated, as in QIDO-RS), date-time ranges. Any other key, or a
malformed value, is a QueryError naming it (400).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from tessera.dicomweb.qido_params import _integer
from tessera.dicomweb.workitem_dataset import ORDER_PRIORITIES
from tessera.index.orders import STATUSES
from tessera.index.query import QueryError
from tessera.index.worklist import WorklistKeyError, date_bounds, time_range
from tessera.index.worklist import WorklistQuery as Query
from tessera.services.workitems import UPS_STATES, order_statuses
from tessera.storage.uids import uid_problem

_REQUEST = "ReferencedRequestSequence"
# Attribute path -> (where in the WorklistQuery, MWL keyword).
ORDER_PATHS: dict[tuple[str, ...], str] = {
    ("PatientName",): "PatientName",
    ("PatientID",): "PatientID",
    ("IssuerOfPatientID",): "IssuerOfPatientID",
    ("PatientSex",): "PatientSex",
    ("StudyInstanceUID",): "StudyInstanceUID",
    (_REQUEST, "StudyInstanceUID"): "StudyInstanceUID",
    (_REQUEST, "AccessionNumber"): "AccessionNumber",
    ("AccessionNumber",): "AccessionNumber",
    (_REQUEST, "RequestedProcedureID"): "RequestedProcedureID",
}
STEP_PATHS: dict[tuple[str, ...], str] = {
    ("ScheduledStationNameCodeSequence", "CodeValue"): "ScheduledStationAETitle",
    ("ScheduledStationAETitle",): "ScheduledStationAETitle",
    ("ScheduledStationName",): "ScheduledStationName",
    ("ScheduledStationClassCodeSequence", "CodeValue"): "Modality",
    ("Modality",): "Modality",
    ("ScheduledHumanPerformersSequence", "HumanPerformerName"): "ScheduledPerformingPhysicianName",
}
OTHER_PATHS = (
    ("ScheduledProcedureStepStartDateTime",),
    ("ProcedureStepState",),
    ("ScheduledProcedureStepPriority",),
    ("SOPInstanceUID",),
)
# Value lists (comma-separated in the query string) for these VRs, as in QIDO-RS.
_LIST_KEYWORDS = {"PatientSex", "StudyInstanceUID", "ScheduledStationAETitle", "Modality"}
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def matching_keys() -> list[str]:
    return [".".join(path) for path in (*ORDER_PATHS, *STEP_PATHS, *OTHER_PATHS)]


def _keyword(component: str, name: str) -> str:
    if len(component) == 8 and all(c in "0123456789abcdefABCDEF" for c in component):
        keyword = keyword_for_tag(int(component, 16))
    else:
        keyword = component if tag_for_keyword(component) is not None else ""
    if not keyword:
        raise QueryError(name, "unknown parameter (not a DICOM keyword or tag)")
    return keyword


def _path(name: str) -> tuple[str, ...]:
    path = tuple(_keyword(part, name) for part in name.split("."))
    if path not in ORDER_PATHS and path not in STEP_PATHS and path not in OTHER_PATHS:
        raise QueryError(
            name, f"not a matching key of the worklist (keys: {', '.join(matching_keys())})"
        )
    return path


def _start(query: Query, name: str, value: str) -> None:
    """Scheduled Procedure Step Start DateTime: a DT value or range -> the worklist's
    combined date and time range."""
    sides = value.split("-")
    if len(sides) > 2 or not any(sides):
        raise QueryError(name, f"{value!r} is not a DT value or range")
    dates, times = [], []
    for side in sides:
        side = side.strip()
        if "+" in side or (len(side) > 8 and not side[8:].split(".")[0].isdigit()):
            raise QueryError(name, f"{value!r}: site-local DT values only (no UTC offset)")
        dates.append(side[:8])
        times.append(side[8:])
    date_text = "-".join(dates) if len(sides) == 2 else dates[0]
    time_text = "-".join(times) if len(sides) == 2 else times[0]
    try:
        date_bounds(date_text)
        if time_text.strip("-"):
            time_range(time_text)
    except WorklistKeyError as exc:
        raise QueryError(name, str(exc)) from None
    query.start_date = date_text
    query.start_time = time_text if time_text.strip("-") else ""


def parse_workitem_search(query_string: str, max_results: int) -> Query:
    """The worklist query (every order status unless ProcedureStepState is given); `limit`
    is one more than the page, to tell whether more results follow."""
    query = Query(order_statuses=STATUSES, limit=max_results + 1)
    seen: set[object] = set()
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name in _CONTROL:
            if name in seen and name != "includefield":
                raise QueryError(name, "given more than once")
            seen.add(name)
            if name == "limit":
                query.limit = min(_integer(name, value, minimum=1), max_results) + 1
            elif name == "offset":
                query.offset = _integer(name, value, minimum=0)
            elif name == "fuzzymatching" and value.lower() != "false":
                raise QueryError(name, "fuzzy matching is not supported")
            continue  # includefield: every workitem attribute is returned
        path = _path(name)
        if path in seen:
            raise QueryError(name, "given more than once")
        seen.add(path)
        value = value.strip()
        if not value or value == "*":
            continue
        if path in ORDER_PATHS or path in STEP_PATHS:
            keyword = ORDER_PATHS.get(path) or STEP_PATHS[path]
            if keyword in _LIST_KEYWORDS:
                value = value.replace(",", "\\")
            if keyword == "StudyInstanceUID":
                for uid in value.split("\\"):
                    if uid_problem(uid):
                        raise QueryError(name, f"{uid!r} is {uid_problem(uid)}")
            target = query.order_keys if path in ORDER_PATHS else query.step_keys
            if target.get(keyword, value) != value:
                raise QueryError(name, f"{keyword} is given twice with different values")
            target[keyword] = value
        elif path == ("ScheduledProcedureStepStartDateTime",):
            _start(query, name, value)
        elif path == ("ProcedureStepState",):
            states = tuple(s.strip().upper() for s in value.split(",") if s.strip())
            unknown = [s for s in states if s not in UPS_STATES]
            if unknown:
                raise QueryError(name, f"{', '.join(unknown)}: states are {', '.join(UPS_STATES)}")
            query.order_statuses = order_statuses(states)
        elif path == ("ScheduledProcedureStepPriority",):
            priorities = [s.strip().upper() for s in value.split(",") if s.strip()]
            if any(p not in ORDER_PRIORITIES for p in priorities):
                raise QueryError(name, "priorities are HIGH, MEDIUM and LOW")
            query.order_keys["RequestedProcedurePriority"] = "\\".join(
                order_priority for p in priorities for order_priority in ORDER_PRIORITIES[p]
            )
        else:  # SOPInstanceUID
            uids = tuple(u.strip() for u in value.split(",") if u.strip())
            bad = [u for u in uids if uid_problem(u)]
            if bad:
                raise QueryError(name, f"{bad[0]!r} is {uid_problem(bad[0])}")
            query.workitem_uids = uids
    return query
