"""UPS-RS, the Worklist Service (PS3.18 §11): workitems over the order store.

    GET  {root}/workitems                      Search Workitems     (read)
    GET  {root}/workitems/{uid}                Retrieve Workitem    (read)
    POST {root}/workitems[?workitem={uid}]     Create Workitem      (orders)
    POST {root}/workitems/{uid}[?transaction=] Update Workitem      (orders)
    PUT  {root}/workitems/{uid}/state          Change Workitem State (orders)
    POST {root}/workitems/{uid}/cancelrequest  Request Cancellation (orders)

Requests and answers are application/dicom+json. The use cases are in
`tessera.services.workitems`; this module parses and answers. An error answers 4xx with
the reason in the body and in a `Warning: 299` header (PS3.18 §8.2.3). Subscriptions and the
notification channel are in `tessera.dicomweb.ups_subscriptions`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qsl

import orjson
from pydicom.dataset import Dataset
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth.permissions import ORDERS, READ
from tessera.dicomweb.api_common import audit_event, read_in_thread, write_with_event
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import ClientError, NotAcceptable
from tessera.dicomweb.gate import AUDIT_QUERY, GuardedRoute, guarded
from tessera.dicomweb.media_type import DICOM_JSON, QualityError, json_answer_type
from tessera.dicomweb.urls import dicomweb_root
from tessera.dicomweb.workitem_dataset import (
    attribute_message,
    order_fields,
    progress_of,
    workitem_json,
)
from tessera.dicomweb.workitem_query import parse_workitem_search
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.orders import new_workitem_uid
from tessera.services import workitems as ups
from tessera.services.orders import InvalidOrder
from tessera.storage.uids import uid_problem

MORE_RESULTS_WARNING = '299 tessera: "There are additional results that can be requested"'
_UID_RE = re.compile(r"^[0-9.]+$")
T = TypeVar("T")


def warning(text: str) -> dict[str, str]:
    """A `Warning: 299` header carrying `text` (ASCII, one line, whatever the client sent)."""
    reason = text.replace('"', "'").encode("ascii", "backslashreplace").decode("ascii")
    reason = "".join(c if c.isprintable() else " " for c in reason)[:400]
    return {"Warning": f'299 tessera: "{reason}"'}


def _failure(status: int, detail: str) -> ClientError:
    return ClientError(status, detail, headers=warning(detail))


async def _run(work: Awaitable[T]) -> T:
    """The service's refusals as UPS-RS answers (404, 409, 400) with a Warning header."""
    try:
        return await work
    except InvalidOrder as exc:
        raise _failure(400, attribute_message(str(exc))) from exc
    except NotFound as exc:
        raise _failure(404, str(exc)) from exc
    except Conflict as exc:
        raise _failure(409, str(exc)) from exc
    except InvalidValue as exc:
        raise _failure(400, str(exc)) from exc


def _answer_type(request: Request) -> str:
    try:
        answer_type = json_answer_type(request.headers.get("accept"))
    except QualityError as exc:
        raise _failure(400, f"{exc} in Accept") from exc
    if answer_type is None:
        raise NotAcceptable(f"UPS-RS answers in {DICOM_JSON} only")
    return answer_type


async def _dataset(request: Request, required: bool = True) -> Dataset:
    """The request's one DICOM JSON dataset (an object, or an array holding one)."""
    raw = await request.body()
    if not raw.strip() and not required:
        return Dataset()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (DICOM_JSON, "application/json"):
        raise _failure(415, f"the body must be {DICOM_JSON}, not {media_type or 'untyped'}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _failure(400, f"the body is not JSON: {exc}") from exc
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, dict):
        raise _failure(400, "the body must be one DICOM JSON dataset (an object)")
    try:
        return Dataset.from_json(body)
    except Exception as exc:  # pydicom raises several types for malformed DICOM JSON
        raise _failure(400, f"the body is not a valid DICOM JSON dataset: {exc}") from exc


def _workitem_uid(request: Request) -> str:
    uid = request.path_params["workitem"]
    if uid_problem(uid):
        raise _failure(404, f"no workitem {uid[:80]}")
    return uid


def _bare_or_named(request: Request, name: str) -> str | None:
    """A UID given as `?{name}={uid}` or, as older editions of PS3.18 write it, `?{uid}`."""
    found = None
    for key, value in parse_qsl(request.url.query, keep_blank_values=True):
        if key == name:
            found = value
        elif not value and _UID_RE.match(key):
            found = key
    return found


def json_answer(body: object, answer_type: str, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), media_type=answer_type, headers=headers)


async def search_workitems(request: Request) -> Response:
    scope = await scope_of(request)
    answer_type = _answer_type(request)
    archive = archive_of(request)
    query = parse_workitem_search(request.url.query, archive.settings.qido_max_results)
    page = query.limit - 1
    rows = await _run(
        read_in_thread(request, lambda conn: ups.search_workitems(conn, scope, query))
    )
    headers = {"Warning": MORE_RESULTS_WARNING} if len(rows) > page else None
    items = [workitem_json(row) for row in rows[:page]]
    return json_answer(items, answer_type, headers)


async def retrieve_workitem(request: Request) -> Response:
    scope = await scope_of(request)
    answer_type = _answer_type(request)
    uid = _workitem_uid(request)
    row = await _run(read_in_thread(request, lambda conn: ups.find_workitem(conn, scope, uid)))
    return json_answer([workitem_json(row)], answer_type)


def _location(request: Request, uid: str) -> str:
    return f"{dicomweb_root(request)}/workitems/{uid}"


async def create_workitem(request: Request) -> Response:
    scope = await scope_of(request)
    ds = await _dataset(request)
    state = ds.get("ProcedureStepState", "")
    if state != ups.UPS_SCHEDULED:
        raise _failure(
            400, f"Procedure Step State (0074,1000) must be SCHEDULED on create, not {state!r}"
        )
    if ds.get("TransactionUID"):
        raise _failure(400, "Transaction UID (0008,1195) must not be given on create")
    uid = _bare_or_named(request, "workitem") or ds.get("SOPInstanceUID") or new_workitem_uid()
    fields = order_fields(ds, partial=False)
    step = fields.pop("scheduled_procedure_step")
    fields["scheduled_procedure_steps"] = [step]
    source = request.query_params.get("source")
    if source is not None:
        fields["source"] = source
    if not fields.get("accession_number"):
        raise _failure(
            400,
            "Referenced Request Sequence > Accession Number (0008,0050) is required: "
            "every workitem is an order",
        )
    event = audit_event(request, "workitem.create", str(uid)[:64])
    try:
        await _run(
            write_with_event(
                request, lambda conn: ups.create_workitem(conn, scope, str(uid), fields), event
            )
        )
    except IntegrityError as exc:  # a concurrent create of the same UID or accession won
        raise _failure(409, f"workitem {uid} or its accession number already exists") from exc
    location = _location(request, str(uid))
    return Response(status_code=201, headers={"Location": location, "Content-Location": location})


async def update_workitem(request: Request) -> Response:
    scope = await scope_of(request)
    uid = _workitem_uid(request)
    ds = await _dataset(request)
    if "ProcedureStepState" in ds:
        raise _failure(
            400, "Procedure Step State (0074,1000) changes only through Change Workitem State"
        )
    if "TransactionUID" in ds:
        raise _failure(400, "Transaction UID (0008,1195) belongs in the 'transaction' parameter")
    transaction = _bare_or_named(request, "transaction")
    changes = order_fields(ds, partial=True)
    for name in ("accession_number", "issuer_of_accession_number", "study_instance_uid"):
        if name in changes:
            raise _failure(
                400, attribute_message(f"'{name}' identifies the order: it never changes")
            )
    reported = progress_of(ds)
    progress = None if reported is None else ups.Progress(*reported)
    known = {
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "ProcedureStepProgressInformationSequence",
    }
    ignored = (
        sorted(e.keyword or str(e.tag) for e in ds if e.keyword not in known) if not changes else []
    )
    fields = sorted(changes) + (["progress"] if progress is not None else [])
    event = audit_event(request, "workitem.update", uid, {"fields": fields})
    await _run(
        write_with_event(
            request,
            lambda conn: ups.update_workitem(conn, scope, uid, transaction, changes, progress),
            event,
        )
    )
    headers = warning(f"not kept: {', '.join(ignored)}") if ignored else None
    return Response(status_code=200, headers=headers)


async def change_workitem_state(request: Request) -> Response:
    scope = await scope_of(request)
    uid = _workitem_uid(request)
    ds = await _dataset(request)
    state = str(ds.get("ProcedureStepState", "") or "")
    if not state:
        raise _failure(400, "Procedure Step State (0074,1000) is required")
    transaction = ds.get("TransactionUID")
    event = audit_event(request, "workitem.state", uid, {"state": state})
    said = await _run(
        write_with_event(
            request,
            lambda conn: ups.change_state(
                conn, scope, uid, state, str(transaction) if transaction else None
            ),
            event,
        )
    )
    return Response(status_code=200, headers=warning(said) if said else None)


async def request_cancellation(request: Request) -> Response:
    scope = await scope_of(request)
    uid = _workitem_uid(request)
    ds = await _dataset(request, required=False)
    reason = str(ds.get("ReasonForCancellation", "") or "")[:400]
    requested = {
        "requesting_ae": requesting_ae(scope.principal),
        "contact_display_name": str(ds.get("ContactDisplayName", "") or "")[:64],
        "contact_uri": str(ds.get("ContactURI", "") or "")[:400],
    }
    event = audit_event(request, "workitem.cancelrequest", uid, {"reason": reason})
    said = await _run(
        write_with_event(
            request,
            lambda conn: ups.request_cancellation(conn, scope, uid, reason, requested),
            event,
        )
    )
    return Response(status_code=202, headers=warning(said) if said else None)


def requesting_ae(principal: str) -> str:
    """The Requesting AE (0074,1236) of a cancel request made over HTTP: the caller's name,
    made a valid AE title (at most 16 printable ASCII characters, no backslash)."""
    title = "".join(c for c in principal if c.isprintable() and c != "\\" and ord(c) < 127)
    return title.strip()[:16].strip() or "ANONYMOUS"


def _route(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str, permission: str
) -> GuardedRoute:
    action = AUDIT_QUERY if method == "GET" else None
    return guarded(path, endpoint, methods=[method], permission=permission, action=action)


routes = [
    _route("/workitems", search_workitems, "GET", READ),
    _route("/workitems", create_workitem, "POST", ORDERS),
    _route("/workitems/{workitem}", retrieve_workitem, "GET", READ),
    _route("/workitems/{workitem}", update_workitem, "POST", ORDERS),
    _route("/workitems/{workitem}/state", change_workitem_state, "PUT", ORDERS),
    _route("/workitems/{workitem}/cancelrequest", request_cancellation, "POST", ORDERS),
]


# The refusal mapping above, for the subscription routes (tessera.dicomweb.ups_subscriptions).
run_workitem_call = _run
