"""`tessera orders ...`: orders from scripts, on the local index (like `tessera peers`),
through the same services as the REST API; JSON out, the REST API's shape.

    tessera orders create < order.json        tessera orders list [--status S] [--accession A]
    tessera orders show ID                    tessera orders history ID
    tessera orders cancel ID [--reason R]     tessera orders status ID STATUS [--reason R]
"""

from __future__ import annotations

import argparse
import json
import sys

import orjson

from tessera.cli_common import add_store_flags, open_for_command


def register(sub: argparse._SubParsersAction) -> None:
    orders = sub.add_parser("orders", help="create, list, show, cancel orders (docs/orders.md)")
    orders.add_argument("action", choices=["create", "list", "show", "history", "cancel", "status"])
    orders.add_argument("order_id", nargs="?", help="order ID (show, history, cancel, status)")
    orders.add_argument("new_status", nargs="?", help="status (for `status`)")
    orders.add_argument("--tenant", default="default", help="tenant name (default: default)")
    orders.add_argument("--file", help="order JSON for `create` (default: standard input)")
    orders.add_argument("--reason", default="", help="why (cancel, status)")
    orders.add_argument("--status", help="list: only these statuses (comma list)")
    orders.add_argument("--accession", help="list: this accession number")
    orders.add_argument("--patient-id", help="list: this patient ID")
    orders.add_argument("--limit", type=int, default=100, help="list: at most this many")
    add_store_flags(orders)
    orders.set_defaults(func=cmd_orders)


def _print(value: object) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def cmd_orders(args: argparse.Namespace) -> int:
    from tessera.dicomweb.orders_api import order_json
    from tessera.index.order_store import OrderSearch
    from tessera.index.tenancy import tenant_by_name
    from tessera.scope import full_scope
    from tessera.services import orders as o

    # The index must be migrated (`tessera migrate`), like every management command.
    archive = open_for_command(args)
    try:
        with archive.database.read() as conn:
            tenant = tenant_by_name(conn, args.tenant)
        if tenant is None:
            print(f"error: unknown tenant {args.tenant!r}", file=sys.stderr)
            return 2
        scope = full_scope(tenant.id, "cli")
        if args.action == "create":
            raw = open(args.file, "rb").read() if args.file else sys.stdin.buffer.read()
            try:
                body = json.loads(raw or b"{}")
            except ValueError as exc:
                print(f"error: the order is not JSON: {exc}", file=sys.stderr)
                return 2
            if not isinstance(body, dict):
                print("error: the order must be a JSON object", file=sys.stderr)
                return 2
            with archive.database.write() as conn:
                order, _created = o.create_order(conn, scope, body)
            _print(order_json(order))
            return 0
        if args.action == "list":
            statuses = tuple(s.strip().upper() for s in (args.status or "").split(",") if s)
            search = OrderSearch(
                accession_number=args.accession,
                patient_id=args.patient_id,
                statuses=statuses,
                limit=max(1, min(args.limit, 1000)),
            )
            with archive.database.read() as conn:
                _print([order_json(x) for x in o.search_orders(conn, scope, search)])
            return 0
        if args.order_id is None:
            print(f"error: orders {args.action} needs an order ID", file=sys.stderr)
            return 2
        order_id = o.parse_order_id(args.order_id)
        if args.action == "show":
            with archive.database.read() as conn:
                _print(order_json(o.get_order(conn, scope, order_id)))
        elif args.action == "history":
            with archive.database.read() as conn:
                _print(o.status_history(conn, scope, order_id))
        else:
            status = "CANCELLED" if args.action == "cancel" else (args.new_status or "").upper()
            with archive.database.write() as conn:
                _print(order_json(o.change_status(conn, scope, order_id, status, args.reason)))
        return 0
    except o.OrderNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (o.InvalidOrder, o.OrderConflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        archive.close()
