"""The orders REST API (JSON) at `{api}/orders`, beside the admin API: create, search, get,
update while scheduled, cancel or change status, attach a study, status history.

Permission `orders` to create and change, `read` to see, declared on the routes (the gate,
`tessera.dicomweb.gate`); handlers raise and the app's one error table answers. A
source-locked caller sees only its sources' orders; any other order answers 404, like one
that does not exist. Every change is written to the audit trail in its transaction. See
docs/orders.md.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth.permissions import ORDERS, READ
from tessera.dicomweb.api_common import (
    audit_event,
    json_answer,
    json_body,
    read_in_thread,
    write_with_event,
)
from tessera.dicomweb.context import scope_of
from tessera.dicomweb.errors import BadRequest
from tessera.dicomweb.gate import guarded
from tessera.index.order_store import SORT_KEYS, Order, OrderSearch
from tessera.index.orders import STATUSES
from tessera.index.sources import source_pk_by_name
from tessera.services import orders as o

MAX_PAGE = 1000


def order_json(order: Order) -> dict:
    return {
        "id": order.id,
        "status": order.status,
        "source": order.source,
        "accession_number": order.accession_number,
        "issuer_of_accession_number": order.issuer_of_accession_number,
        "patient_name": order.patient_name,
        "patient_id": order.patient_id,
        "issuer_of_patient_id": order.issuer_of_patient_id,
        "patient_birth_date": _iso(order.patient_birth_date),
        "patient_sex": order.patient_sex,
        "requested_procedure_id": order.requested_procedure_id,
        "requested_procedure_description": order.requested_procedure_description,
        "requested_procedure_code": {
            "code_value": order.requested_procedure_code_value,
            "coding_scheme_designator": order.requested_procedure_coding_scheme,
            "code_meaning": order.requested_procedure_code_meaning,
        },
        "referring_physician_name": order.referring_physician_name,
        "priority": order.priority,
        "reason_for_requested_procedure": order.reason_for_requested_procedure,
        "study_instance_uid": order.study_instance_uid,
        "images_attached": order.study_pk is not None,
        "comments": order.comments,
        "created_at": _iso(order.created_at),
        "updated_at": _iso(order.updated_at),
        "scheduled_procedure_steps": [
            {
                "scheduled_procedure_step_id": step.scheduled_procedure_step_id,
                "start": _start(step.start_date, step.start_time),
                "modality": step.modality,
                "scheduled_station_ae_title": step.scheduled_station_ae_title,
                "scheduled_station_name": step.scheduled_station_name,
                "scheduled_performing_physician_name": step.scheduled_performing_physician_name,
                "description": step.description,
            }
            for step in order.steps
        ],
    }


def _iso(value) -> str | None:
    return None if value is None else value.isoformat()


def _start(day, moment) -> str | None:
    if day is None:
        return None
    return day.isoformat() if moment is None else f"{day.isoformat()}T{moment.isoformat()}"


def _order_id(request: Request) -> int:
    return o.parse_order_id(request.path_params["order_id"])


_SEARCH_PARAMETERS = {
    "patient_name",
    "patient_id",
    "accession_number",
    "scheduled_from",
    "scheduled_to",
    "modality",
    "status",
    "source",
    "sort",
    "limit",
    "offset",
}


def _number(params, name: str, default: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be a whole number") from None
    if value < 0:
        raise BadRequest(f"'{name}' must not be negative")
    return min(value, high)


def parse_search(params) -> tuple[OrderSearch, str | None]:
    """The search from query parameters, and the source name to resolve."""
    unknown = sorted(set(params) - _SEARCH_PARAMETERS)
    if unknown:
        raise BadRequest(
            f"unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_SEARCH_PARAMETERS))}"
        )
    statuses = tuple(s.strip().upper() for s in params.get("status", "").split(",") if s.strip())
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise BadRequest(f"'status': unknown {', '.join(bad)} (known: {', '.join(STATUSES)})")
    sort = params.get("sort", "-created")
    if sort.lstrip("-") not in SORT_KEYS:
        raise BadRequest(f"'sort' must be one of {', '.join(SORT_KEYS)} (prefix '-' to reverse)")
    name = (params.get("patient_name") or "").strip().rstrip("*").upper()
    search = OrderSearch(
        patient_name_prefix=name or None,
        patient_id=params.get("patient_id") or None,
        accession_number=params.get("accession_number") or None,
        scheduled_from=o.parse_date_value(params.get("scheduled_from"), "scheduled_from"),
        scheduled_to=o.parse_date_value(params.get("scheduled_to"), "scheduled_to"),
        modality=(params.get("modality") or "").upper() or None,
        statuses=statuses,
        sort=sort,
        limit=_number(params, "limit", 100, MAX_PAGE) or 1,
        offset=_number(params, "offset", 0, 2**31),
    )
    if (
        search.scheduled_from
        and search.scheduled_to
        and search.scheduled_from > search.scheduled_to
    ):
        raise BadRequest("'scheduled_from' is after 'scheduled_to'")
    return search, params.get("source")


async def orders_search(request: Request) -> Response:
    scope = await scope_of(request)
    search, source = parse_search(request.query_params)

    def work(conn):
        if source is not None:
            source_pk = source_pk_by_name(conn, scope.tenant_id, source)
            if source_pk is None or not o.sees_source(scope, source_pk):
                raise BadRequest(f"unknown source {source!r}")
            search.source_pk = source_pk
        return o.search_orders(conn, scope, search)

    found = await read_in_thread(request, work)
    return json_answer([order_json(order) for order in found])


async def orders_create(request: Request) -> Response:
    scope = await scope_of(request)
    body = await json_body(request)
    event = audit_event(request, "order.create", str(body.get("accession_number", ""))[:64])
    try:
        order, created = await write_with_event(
            request, lambda conn: o.create_order(conn, scope, body), event
        )
    except IntegrityError:
        # A concurrent create of the same accession number won: answer with its order.
        order, created = await write_with_event(
            request, lambda conn: o.create_order(conn, scope, body), event
        )
    return json_answer(order_json(order), 201 if created else 200)


async def orders_get(request: Request) -> Response:
    scope = await scope_of(request)
    order_id = _order_id(request)
    order = await read_in_thread(request, lambda conn: o.get_order(conn, scope, order_id))
    return json_answer(order_json(order))


async def orders_update(request: Request) -> Response:
    scope = await scope_of(request)
    order_id = _order_id(request)
    body = await json_body(request)
    order = await write_with_event(
        request,
        lambda conn: o.update_order(conn, scope, order_id, body),
        audit_event(request, "order.update", str(order_id), {"fields": sorted(body)}),
    )
    return json_answer(order_json(order))


async def _reason(request: Request) -> str:
    body = await json_body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise BadRequest("'reason' must be a string")
    return reason[:512]


async def orders_cancel(request: Request) -> Response:
    scope = await scope_of(request)
    order_id = _order_id(request)
    reason = await _reason(request)
    order = await write_with_event(
        request,
        lambda conn: o.cancel_order(conn, scope, order_id, reason),
        audit_event(request, "order.cancel", str(order_id), {"reason": reason}),
    )
    return json_answer(order_json(order))


async def orders_status(request: Request) -> Response:
    scope = await scope_of(request)
    order_id = _order_id(request)
    body = await json_body(request)
    status = body.get("status")
    if not isinstance(status, str):
        raise BadRequest("'status' is required")
    reason = await _reason(request)
    order = await write_with_event(
        request,
        lambda conn: o.change_status(conn, scope, order_id, status.upper(), reason),
        audit_event(request, "order.status", str(order_id), {"status": status, "reason": reason}),
    )
    return json_answer(order_json(order))


async def orders_attach_study(request: Request) -> Response:
    scope = await scope_of(request)
    order_id = _order_id(request)
    body = await json_body(request)
    study_uid = body.get("study_instance_uid")
    if not isinstance(study_uid, str) or not study_uid:
        raise BadRequest("'study_instance_uid' is required")

    def work(conn):
        o.attach_study_to_order(conn, scope, order_id, study_uid)
        return o.get_order(conn, scope, order_id)

    order = await write_with_event(
        request, work, audit_event(request, "order.attach", str(order_id), {"study": study_uid})
    )
    return json_answer(order_json(order))


async def orders_history(request: Request) -> Response:
    scope = await scope_of(request)
    order_id = _order_id(request)
    return json_answer(
        await read_in_thread(request, lambda conn: o.status_history(conn, scope, order_id))
    )


routes = [
    guarded("/orders", orders_search, methods=["GET"], permission=READ),
    guarded("/orders", orders_create, methods=["POST"], permission=ORDERS),
    guarded("/orders/{order_id}", orders_get, methods=["GET"], permission=READ),
    guarded("/orders/{order_id}", orders_update, methods=["PATCH"], permission=ORDERS),
    guarded("/orders/{order_id}/cancel", orders_cancel, methods=["POST"], permission=ORDERS),
    guarded("/orders/{order_id}/status", orders_status, methods=["POST"], permission=ORDERS),
    guarded("/orders/{order_id}/study", orders_attach_study, methods=["POST"], permission=ORDERS),
    guarded("/orders/{order_id}/history", orders_history, methods=["GET"], permission=READ),
]
