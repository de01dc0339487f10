"""UPS subscriptions and event reports (PS3.4 CC.2.3, CC.2.4; PS3.18 §11.10-11.13).

Subscribing, unsubscribing and suspending change the AE's rows (`index/ups_subscriptions`).
Events are never sent from the process that made the change: every change that matters is
in the tenant's change feed (`order.status_changed`, `workitem.cancel_requested`,
`workitem.subscribed`), and each open notification channel follows the feed and turns the
entries into Event Reports (`event_reports`), so a channel on any server process over the
same index hears of changes made on any other.

What an AE is told is limited by the Scope of the caller that opened its channel: the
workitems of an entry are looked up under that Scope in SQL, so a source-locked user or
another tenant never hears of a workitem it cannot see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import Connection, select

from tessera.dicomweb.workitem_dataset import assignment_elements, progress_item
from tessera.dicomweb.workitem_query import parse_workitem_search
from tessera.index import changes
from tessera.index import ups_subscriptions as rows
from tessera.index.errors import InvalidValue, NotFound
from tessera.index.order_store import ORDER, STEP, visible_orders
from tessera.index.orders import OPEN_STATUSES, STATUSES
from tessera.index.query import QueryError
from tessera.index.ups_subscriptions import FILTERED, WORKITEM, WORKLIST, Subscription
from tessera.index.worklist import WorklistQuery, iter_worklist
from tessera.scope import Scope, full_scope
from tessera.services.workitems import UPS_CANCELED, UPS_STATE, find_workitem

# Well-known UIDs of the global subscriptions (PS3.4 CC.3.1, PS3.6 Annex A).
WORKLIST_UID = "1.2.840.10008.5.1.4.34.5"
FILTERED_WORKLIST_UID = "1.2.840.10008.5.1.4.34.5.1"
# UPS Event SOP Class: the Affected SOP Class of every Event Report.
UPS_EVENT_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.4"
# Event Type ID (0000,1002), PS3.4 Table CC.2.4-1.
STATE_REPORT = 1
CANCEL_REQUESTED = 2
PROGRESS_REPORT = 3
SCP_STATUS_CHANGE = 4
ASSIGNED = 5
# SCP Status (0074,1242) of an SCP Status Change, and what a restart kept (WARM START: the
# subscriptions and the workitems are rows in the index, kept across restarts).
GOING_DOWN = "GOING DOWN"
RESTARTED = "RESTARTED"
WARM_START = "WARM START"
# Matching keys of a filtered subscription are checked against this many workitems at most
# when an initial report is due (a global subscription's first reports too).
INITIAL_REPORTS_LIMIT = 10_000
FEED_KINDS = (
    changes.ORDER_STATUS_CHANGED,
    changes.WORKITEM_CANCEL_REQUESTED,
    changes.WORKITEM_SUBSCRIBED,
    changes.WORKITEM_PROGRESS,
    changes.WORKITEM_ASSIGNED,
)
# Feed entries about one workitem of an order, and the Event Report each makes.
_WORKITEM_KINDS = (
    changes.WORKITEM_CANCEL_REQUESTED,
    changes.WORKITEM_PROGRESS,
    changes.WORKITEM_ASSIGNED,
)


class InvalidSubscription(InvalidValue):
    """A bad AE title, filter or parameter (400); the message names it."""


class SubscriptionNotFound(NotFound):
    """No such subscription of this AE (404)."""


def ae_title_problem(value: str) -> str | None:
    """Why `value` is not an AE title (PS3.5 Table 6.2-1), None when it is one."""
    if not value.strip(" "):
        return "an AE title must not be empty or all spaces"
    if len(value) > 16:
        return "an AE title has at most 16 characters"
    if any(c == "\\" or not c.isprintable() or ord(c) > 126 for c in value):
        return "an AE title holds printable ASCII characters other than backslash"
    return None


def ae_title(value: str) -> str:
    """The AE title of a URL (leading and trailing spaces are not significant)."""
    problem = ae_title_problem(value)
    if problem:
        raise InvalidSubscription(f"AE title {value[:40]!r}: {problem}")
    return value.strip(" ")


def _filter_pairs(query_string: str) -> list[tuple[str, str]]:
    """The matching keys of a Filtered Worklist subscription: `filter=Key=value,Key2=value`
    (PS3.18 §11.10.1.2) and, as earlier editions wrote them, plain `Key=value` parameters.
    In `filter`, a piece without '=' continues the previous value (a value list)."""
    pairs: list[tuple[str, str]] = []
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name == "deletionlock":
            continue
        if name != "filter":
            pairs.append((name, value))
            continue
        for piece in value.split(","):
            key, sep, item = piece.partition("=")
            if sep:
                pairs.append((key.strip(), item))
            elif pairs and piece:
                pairs[-1] = (pairs[-1][0], pairs[-1][1] + "," + piece)
            elif piece:
                raise InvalidSubscription(f"filter: {piece!r} is not attribute=value")
    return pairs


def parse_filter(query_string: str) -> str:
    """The filter of a Filtered Worklist subscription as a Search Workitems query string,
    checked (400 naming a bad key or value)."""
    pairs = _filter_pairs(query_string)
    control = sorted({name for name, _ in pairs} & {"limit", "offset", "includefield"})
    if control:
        raise InvalidSubscription(f"filter: '{control[0]}' is not a matching key")
    if not pairs:
        raise InvalidSubscription(
            "a Filtered Worklist subscription needs matching keys (filter=Attribute=value)"
        )
    normalized = urlencode(pairs)
    try:
        parse_workitem_search(normalized, INITIAL_REPORTS_LIMIT)
    except QueryError as exc:
        raise InvalidSubscription(f"filter: {exc}") from exc
    return normalized


def _filter_query(filter_string: str, uids: tuple[str, ...] = ()) -> WorklistQuery:
    query = parse_workitem_search(filter_string, INITIAL_REPORTS_LIMIT)
    query.workitem_uids = uids
    query.offset = 0
    return query


def _global_kind(resource: str) -> str | None:
    return {WORKLIST_UID: WORKLIST, FILTERED_WORKLIST_UID: FILTERED}.get(resource)


def subscribe(
    conn: Connection,
    scope: Scope,
    resource: str,
    ae: str,
    deletion_lock: bool,
    query_string: str = "",
) -> None:
    """Subscribe (PS3.4 CC.2.3.3): `resource` is a workitem UID or a global subscription's
    well-known UID. The AE's initial State Reports are due at once: a `workitem.subscribed`
    entry in the change feed tells every open channel of the AE."""
    ae = ae_title(ae)
    kind = _global_kind(resource)
    filter_string = parse_filter(query_string) if kind == FILTERED else ""
    source_pk = None
    if kind is None:
        row = find_workitem(conn, scope, resource)
        source_pk = row["source_pk"]
        rows.put_subscription(
            conn,
            scope.tenant_id,
            ae,
            WORKITEM,
            workitem_uid=resource,
            deletion_lock=deletion_lock,
            principal=scope.principal,
        )
    else:
        rows.put_subscription(
            conn,
            scope.tenant_id,
            ae,
            kind,
            filter=filter_string,
            deletion_lock=deletion_lock,
            principal=scope.principal,
        )
    detail = {"ae_title": ae, "subscription": kind or WORKITEM}
    if kind is None:
        detail["workitem_uid"] = resource
    changes.defer_change(
        conn, scope.tenant_id, source_pk, changes.WORKITEM_SUBSCRIBED, detail=detail
    )


def unsubscribe(conn: Connection, scope: Scope, resource: str, ae: str) -> None:
    """Unsubscribe (PS3.18 §11.11): from one workitem (while a global subscription holds,
    the AE opts out of that workitem), or from a global subscription (and with it from
    every workitem)."""
    ae = ae_title(ae)
    kind = _global_kind(resource)
    if kind is not None:
        if not rows.drop_global_subscription(conn, scope.tenant_id, ae, kind):
            raise SubscriptionNotFound(f"AE {ae} has no {kind} subscription")
        return
    find_workitem(conn, scope, resource)
    held = rows.subscriptions_of(conn, scope.tenant_id, ae)
    if any(s.kind != WORKITEM for s in held):
        rows.opt_out(conn, scope.tenant_id, ae, resource)
        return
    if not rows.drop_workitem_subscription(conn, scope.tenant_id, ae, resource):
        raise SubscriptionNotFound(f"AE {ae} has no subscription to workitem {resource}")


def suspend(conn: Connection, scope: Scope, resource: str, ae: str) -> None:
    """Suspend Global Subscription (PS3.18 §11.12): no new workitems for the AE; those it
    holds stay."""
    ae = ae_title(ae)
    kind = _global_kind(resource)
    if kind is None:
        raise InvalidSubscription(
            f"only a global subscription ({WORKLIST_UID} or {FILTERED_WORKLIST_UID}) is suspended"
        )
    if not rows.suspend_global_subscription(conn, scope.tenant_id, ae, kind):
        raise SubscriptionNotFound(f"AE {ae} has no {kind} subscription")


@dataclass(frozen=True)
class Item:
    """A workitem the Scope sees, with what deciding its subscriptions needs."""

    workitem_uid: str
    order_id: int
    status: str
    created_at: datetime


def _items_of_order(conn: Connection, scope: Scope, order_id: int) -> list[Item]:
    found = conn.execute(
        select(STEP.c.workitem_uid, ORDER.c.id, ORDER.c.status, ORDER.c.created_at)
        .join(ORDER, ORDER.c.id == STEP.c.order_pk)
        .where(visible_orders(scope), ORDER.c.id == order_id)
        .order_by(STEP.c.position)
    )
    return [Item(*row) for row in found]


def _items(conn: Connection, scope: Scope, query: WorklistQuery) -> list[Item]:
    return [
        Item(row["sps_workitem_uid"], row["id"], row["status"], row["created_at"])
        for row in iter_worklist(conn, scope, query)
    ]


def _before(created_at: datetime, suspended_at: datetime | None) -> bool:
    if suspended_at is None:
        return True
    if (created_at.tzinfo is None) != (suspended_at.tzinfo is None):
        created_at, suspended_at = (
            created_at.replace(tzinfo=None),
            suspended_at.replace(tzinfo=None),
        )
    return created_at < suspended_at


def subscribed_items(
    conn: Connection, scope: Scope, held: list[Subscription], items: list[Item]
) -> list[Item]:
    """The items the AE holding `held` is subscribed to: its own workitem subscriptions,
    else its global ones (a filtered one when the item matches; a suspended one only for
    items created before it was suspended)."""
    explicit = {s.workitem_uid: s.subscribed for s in held if s.kind == WORKITEM}
    chosen = []
    for item in items:
        if item.workitem_uid in explicit:
            if explicit[item.workitem_uid]:
                chosen.append(item)
            continue
        for sub in held:
            if sub.kind == WORKITEM or not _before(item.created_at, sub.suspended_at):
                continue
            if sub.kind == WORKLIST or _matching(conn, scope, sub.filter, item):
                chosen.append(item)
                break
    return chosen


def _matching(conn: Connection, scope: Scope, filter_string: str, item: Item) -> bool:
    return bool(_items(conn, scope, _filter_query(filter_string, (item.workitem_uid,))))


def has_subscriber(conn: Connection, tenant_id: int, workitem_uid: str) -> bool:
    """Is any AE of the tenant subscribed to this workitem (can a cancel request be passed
    on to its performer)?"""
    scope = full_scope(tenant_id, "ups-events")
    row = find_workitem(conn, scope, workitem_uid)
    item = Item(workitem_uid, row["id"], row["status"], row["created_at"])
    return any(
        subscribed_items(conn, scope, held, [item])
        for held in rows.subscribers(conn, tenant_id).values()
    )


def _report(uid: str, event_type: int, **attributes: dict) -> dict:
    return {
        "00000002": {"vr": "UI", "Value": [UPS_EVENT_SOP_CLASS]},
        "00001000": {"vr": "UI", "Value": [uid]},
        "00001002": {"vr": "US", "Value": [event_type]},
        **attributes,
    }


def state_report(uid: str, state: str, reason: str = "") -> dict:
    """UPS State Report (Event Type 1): Procedure Step State, Input Readiness State, and
    the Reason For Cancellation of a CANCELED one when there is one."""
    attributes = {
        "00404041": {"vr": "CS", "Value": ["READY"]},
        "00741000": {"vr": "CS", "Value": [state]},
    }
    if state == UPS_CANCELED and reason:
        attributes["00741238"] = {"vr": "LT", "Value": [reason[:1024]]}
    return _report(uid, STATE_REPORT, **attributes)


def cancel_requested_report(uid: str, detail: dict) -> dict:
    """UPS Cancel Requested (Event Type 2): the Requesting AE and what the request gave."""
    attributes = {"00741236": {"vr": "AE", "Value": [detail.get("requesting_ae") or "TESSERA"]}}
    for tag, name, vr in (
        ("00741238", "reason", "LT"),
        ("0074100C", "contact_display_name", "LO"),
        ("0074100A", "contact_uri", "UR"),
    ):
        if detail.get(name):
            attributes[tag] = {"vr": vr, "Value": [detail[name]]}
    return _report(uid, CANCEL_REQUESTED, **attributes)


def progress_report(uid: str, detail: dict) -> dict:
    """UPS Progress Report (Event Type 3): Procedure Step Progress Information Sequence as
    the performer last reported it (PS3.4 CC.2.4.2)."""
    item = progress_item(detail.get("progress"), detail.get("progress_description"))
    return _report(uid, PROGRESS_REPORT, **{"00741002": {"vr": "SQ", "Value": [item]}})


def assigned_report(uid: str, detail: dict) -> dict:
    """UPS Assigned (Event Type 5): the Scheduled Station Name Code Sequence and Scheduled
    Human Performers Sequence the workitem now has (PS3.4 CC.2.4.2)."""
    return _report(
        uid,
        ASSIGNED,
        **assignment_elements(
            str(detail.get("scheduled_station_ae_title") or ""),
            str(detail.get("scheduled_station_name") or ""),
            str(detail.get("scheduled_performing_physician_name") or ""),
        ),
    )


def scp_status_report(status: str) -> dict:
    """SCP Status Change (Event Type 4, PS3.4 Table CC.2.4-1): the server itself is GOING
    DOWN or has RESTARTED, so the report names no workitem but the well-known UID of the
    global subscription; on RESTARTED, Subscription List Status and Unified Procedure Step
    List Status (both WARM START: nothing was lost)."""
    if status not in (GOING_DOWN, RESTARTED):
        raise ValueError(f"SCP Status is GOING DOWN or RESTARTED, not {status!r}")
    attributes = {"00741242": {"vr": "CS", "Value": [status]}}
    if status == RESTARTED:
        attributes["00741244"] = {"vr": "CS", "Value": [WARM_START]}
        attributes["00741246"] = {"vr": "CS", "Value": [WARM_START]}
    return _report(WORKLIST_UID, SCP_STATUS_CHANGE, **attributes)


_REPORTS = {
    changes.WORKITEM_CANCEL_REQUESTED: cancel_requested_report,
    changes.WORKITEM_PROGRESS: progress_report,
    changes.WORKITEM_ASSIGNED: assigned_report,
}


def event_reports(
    conn: Connection, scope: Scope, ae: str, change: changes.Change
) -> Iterator[dict]:
    """The Event Reports the feed entry `change` makes for the AE, as the Scope of its
    channel sees the workitems (none for a workitem the Scope cannot see)."""
    detail = change.detail
    if change.kind == changes.WORKITEM_SUBSCRIBED:
        if detail.get("ae_title") == ae:
            yield from _initial_reports(conn, scope, ae, detail)
        return
    held = rows.subscriptions_of(conn, scope.tenant_id, ae)
    if not held:
        return
    if change.kind == changes.ORDER_STATUS_CHANGED:
        before, after = detail.get("from_status"), detail.get("order_status")
        if after not in UPS_STATE or (
            before is not None and UPS_STATE.get(before) == UPS_STATE[after]
        ):
            return
        items = _items_of_order(conn, scope, int(detail.get("order_id") or 0))
        for item in subscribed_items(conn, scope, held, items):
            yield state_report(item.workitem_uid, UPS_STATE[after], detail.get("reason") or "")
    elif change.kind in _WORKITEM_KINDS:
        items = [
            item
            for item in _items_of_order(conn, scope, int(detail.get("order_id") or 0))
            if item.workitem_uid == detail.get("workitem_uid")
        ]
        for item in subscribed_items(conn, scope, held, items):
            yield _REPORTS[change.kind](item.workitem_uid, detail)


def _initial_reports(conn: Connection, scope: Scope, ae: str, detail: dict) -> Iterator[dict]:
    """The State Reports of a new subscription (PS3.4 CC.2.3.3): the workitem's, or every
    open workitem the global subscription takes in (as its rows now say: a later
    unsubscribe or suspension wins)."""
    held = rows.subscriptions_of(conn, scope.tenant_id, ae)
    kind = detail.get("subscription")
    if kind == WORKITEM:
        uid = str(detail.get("workitem_uid") or "")
        query = WorklistQuery(order_statuses=STATUSES, workitem_uids=(uid,), limit=1)
    elif kind == FILTERED:
        sub = next((s for s in held if s.kind == FILTERED), None)
        if sub is None:
            return
        query = _filter_query(sub.filter)
        query.order_statuses = tuple(s for s in query.order_statuses if s in OPEN_STATUSES)
        query.limit = INITIAL_REPORTS_LIMIT
    else:
        query = WorklistQuery(order_statuses=OPEN_STATUSES, limit=INITIAL_REPORTS_LIMIT)
    for item in subscribed_items(conn, scope, held, _items(conn, scope, query)):
        yield state_report(item.workitem_uid, UPS_STATE[item.status])
