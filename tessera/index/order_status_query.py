"""Order status in QIDO-RS study searches (a Tessera extension, docs/qido.md "Order status").

`orderstatus=IMAGES_READY,REPORTED` keeps the studies that have an order in one of those
statuses; the statuses are returned (with `orderstatus=`, or `includefield=OrderStatus`) as
a private element of a Tessera private block, so standard clients ignore it:

    (0071,0010) LO  Private Creator "TESSERA 1.0"
    (0071,1001) CS  the statuses of the study's orders (one value per order, oldest first;
                    present and empty when the study has none)

Only orders the caller's Scope sees count, in the filter and in the values: the tenant's,
and for a source-locked caller those of their sources (`order_store.visible_orders`), so
neither reveals an order (or a study) of a source the caller cannot see.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, exists, select

from tessera.index.order_store import ORDER, visible_orders
from tessera.scope import Scope

PRIVATE_CREATOR = "TESSERA 1.0"
PRIVATE_CREATOR_TAG = "00710010"
ORDER_STATUS_TAG = "00711001"


def order_status_condition(
    scope: Scope, study_pk: ColumnElement, statuses: Sequence[str]
) -> ColumnElement:
    """The study has a visible order in one of `statuses`."""
    return exists().where(
        ORDER.c.study_pk == study_pk,
        ORDER.c.status.in_(list(statuses)),
        visible_orders(scope),
    )


def add_order_status(
    conn: Connection, scope: Scope, items: list[dict[str, Any]], study_pks: Sequence[int]
) -> None:
    """Each study result gets its visible orders' statuses (items and pks in one order)."""
    by_study: dict[int, list[str]] = defaultdict(list)
    if study_pks:
        for pk, status in conn.execute(
            select(ORDER.c.study_pk, ORDER.c.status)
            .where(ORDER.c.study_pk.in_(sorted(set(study_pks))), visible_orders(scope))
            .order_by(ORDER.c.id)
        ):
            by_study[pk].append(status)
    for index, (item, pk) in enumerate(zip(items, study_pks, strict=True)):
        statuses = by_study.get(pk)
        item[PRIVATE_CREATOR_TAG] = {"vr": "LO", "Value": [PRIVATE_CREATOR]}
        item[ORDER_STATUS_TAG] = {"vr": "CS", "Value": statuses} if statuses else {"vr": "CS"}
        items[index] = dict(sorted(item.items()))
