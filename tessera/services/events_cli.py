"""`tessera webhooks ...` and `tessera routes ...`: look at and act on a tenant's webhooks
and routing rules from the server's machine (the same index functions as the REST API, with
the tenant's full Scope). Output is JSON. Creating them is done over the REST API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import orjson

from tessera.cli_common import add_store_flags, open_for_command


def register(sub: argparse._SubParsersAction) -> None:
    hooks = sub.add_parser("webhooks", help="list webhooks, their deliveries; replay dead letters")
    hooks.add_argument("action", choices=["list", "deliveries", "replay", "replay-dead"])
    hooks.add_argument(
        "id",
        nargs="?",
        type=int,
        help="webhook id (deliveries, replay-dead) or delivery id (replay)",
    )
    hooks.add_argument("--status", choices=["pending", "delivered", "dead"])
    hooks.add_argument("--tenant", default="default", help="tenant name (default: default)")
    add_store_flags(hooks)
    hooks.set_defaults(func=cmd_webhooks)

    routes = sub.add_parser("routes", help="list routing rules and backlog; send again; replay")
    routes.add_argument("action", choices=["list", "deliveries", "send", "replay"])
    routes.add_argument("name", nargs="?", help="the rule's name")
    routes.add_argument("study", nargs="?", help="StudyInstanceUID (send)")
    routes.add_argument("--status", choices=["pending", "delivered", "dead"])
    routes.add_argument("--tenant", default="default", help="tenant name (default: default)")
    add_store_flags(routes)
    routes.set_defaults(func=cmd_routes)


def _run(args: argparse.Namespace, work: Callable) -> int:
    from tessera.index.tenancy import tenant_by_name
    from tessera.scope import full_scope

    archive = open_for_command(args)
    try:
        with archive.database.write() as conn:
            tenant = tenant_by_name(conn, args.tenant)
            if tenant is None:
                print(f"unknown tenant {args.tenant!r}", file=sys.stderr)
                return 2
            try:
                result = work(conn, full_scope(tenant.id, "cli"))
            except (LookupError, ValueError) as exc:
                print(str(exc).strip("'\""), file=sys.stderr)
                return 1
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    finally:
        archive.close()


def _need(value: object, what: str) -> None:
    if value is None:
        raise ValueError(f"this action needs {what}")


def cmd_webhooks(args: argparse.Namespace) -> int:
    from tessera.index import webhooks

    def work(conn, scope):
        if args.action == "list":
            return [s.public() for s in webhooks.list_subscriptions(conn, scope)]
        _need(args.id, "an id")
        if args.action == "deliveries":
            return webhooks.list_deliveries(conn, scope, args.id, args.status, 1000, None)
        if args.action == "replay":
            return webhooks.replay(conn, scope, args.id)
        return {"replayed": webhooks.replay_dead(conn, scope, args.id)}

    return _run(args, work)


def cmd_routes(args: argparse.Namespace) -> int:
    from tessera.index import routes

    def work(conn, scope):
        if args.action == "list":
            return [
                {**rule.public(), "backlog": routes.backlog(conn, scope, rule)}
                for rule in routes.list_rules(conn, scope)
            ]
        _need(args.name, "a rule name")
        if args.action == "deliveries":
            return routes.list_deliveries(conn, scope, args.name, args.status, None, 1000)
        if args.action == "send":
            _need(args.study, "a StudyInstanceUID")
            return {"queued": routes.send_study_again(conn, scope, args.name, args.study)}
        return {"replayed": routes.replay_dead(conn, scope, args.name)}

    return _run(args, work)
