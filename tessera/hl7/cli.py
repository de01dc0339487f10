"""`tessera hl7 facilities ...`: which tenant and source an HL7 v2 sender's messages go to.

    tessera hl7 facilities list
    tessera hl7 facilities add FACILITY --tenant T --source S [--application APP]
    tessera hl7 facilities remove FACILITY [--application APP]

FACILITY is MSH-4 (its first component); APP, when given, must match MSH-3 as well (a row
without one matches any application of the facility). One listener serves the deployment,
so this is a deployment-wide setting, run on the index like `tessera migrate`.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from tessera.cli_common import add_store_flags, open_for_command


def register(sub: argparse._SubParsersAction) -> None:
    hl7 = sub.add_parser("hl7", help="HL7 v2 senders of orders (docs/orders.md)")
    hl7.add_argument("what", choices=["facilities"])
    hl7.add_argument("action", choices=["list", "add", "remove"])
    hl7.add_argument("facility", nargs="?", help="MSH-4 sending facility (add, remove)")
    hl7.add_argument("--application", default="", help="MSH-3 sending application (default any)")
    hl7.add_argument("--tenant", default="default", help="tenant name (add)")
    hl7.add_argument("--source", default="default", help="the tenant's source (add)")
    add_store_flags(hl7)
    hl7.set_defaults(func=cmd_hl7)


def cmd_hl7(args: argparse.Namespace) -> int:
    from tessera.index import hl7_facilities as f
    from tessera.index.errors import Conflict, NotFound
    from tessera.index.sources import source_pk_by_name
    from tessera.index.tenancy import tenant_by_name

    archive = open_for_command(args)
    try:
        if args.action == "list":
            with archive.database.read() as conn:
                rows = [
                    {
                        "facility": x.sending_facility,
                        "application": x.sending_application,
                        "tenant": x.tenant,
                        "source": x.source,
                    }
                    for x in f.list_facilities(conn)
                ]
            print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
            return 0
        if not args.facility:
            print(f"error: hl7 facilities {args.action} needs a FACILITY", file=sys.stderr)
            return 2
        with archive.database.write() as conn:
            if args.action == "remove":
                f.remove_facility(conn, args.facility, args.application)
                return 0
            tenant = tenant_by_name(conn, args.tenant)
            if tenant is None:
                print(f"error: unknown tenant {args.tenant!r}", file=sys.stderr)
                return 2
            source_pk = source_pk_by_name(conn, tenant.id, args.source)
            if source_pk is None:
                print(f"error: tenant {args.tenant} has no source {args.source!r}", file=sys.stderr)
                return 2
            f.add_facility(conn, args.facility, args.application, tenant.id, source_pk)
        return 0
    except (Conflict, NotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, NotFound) else 2
    finally:
        archive.close()
