"""`tessera reports ...`: list and show reports from the machine that holds the index (like
`tessera admin`, no HTTP and no credentials: whoever can open the index is trusted)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tessera.archive import Archive
from tessera.cli_common import add_action, open_for_command, print_result
from tessera.index.reports import STATUSES
from tessera.index.tenancy import tenant_by_name
from tessera.scope import Scope, full_scope


def _open(args: argparse.Namespace) -> tuple[Archive, Scope]:
    archive = open_for_command(args)
    with archive.database.read() as conn:
        tenant = tenant_by_name(conn, args.tenant)
    if tenant is None:
        raise LookupError(f"no tenant {args.tenant!r}")
    return archive, full_scope(tenant.id, principal="cli")


def cmd_list(args: argparse.Namespace) -> list[dict]:
    from tessera.services import reports

    archive, scope = _open(args)
    if args.study:
        views = reports.study_reports(archive, scope, args.study)
        found = [view.report for view in views if args.status in (None, view.report.status)]
    else:
        found = reports.list_reports(archive, scope, args.status, args.limit)
    return [
        {
            "id": row.id,
            "study_instance_uid": row.study_instance_uid,
            "status": row.status,
            "version": row.version,
            "template": row.template_name,
            "signed_by": row.signed_by,
            "updated_at": row.updated_at.isoformat(),
        }
        for row in found
    ]


def cmd_show(args: argparse.Namespace) -> dict:
    from tessera.dicomweb.reports_api import report_json
    from tessera.services import reports
    from tessera.services.report_results import delivery_states

    archive, scope = _open(args)
    view = reports.get_report(archive, scope, args.study, args.report_id)
    shown = report_json(view)
    signed = [v.version for v in view.versions if v.signed_by]
    shown["results_out"] = delivery_states(archive, view.report.id, signed)
    return shown


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reports", help="list and show reports (run on the server)")
    actions = parser.add_subparsers(dest="reports_command", required=True)

    def action(
        name: str, func: Callable[[argparse.Namespace], dict | list], help_text: str
    ) -> argparse.ArgumentParser:
        sub_parser = add_action(actions, name, func, help_text, _show)
        sub_parser.add_argument("--tenant", default="default", help="tenant (default: default)")
        return sub_parser

    listing = action("list", cmd_list, "reports, newest first (or those of one study)")
    listing.add_argument("--study", help="only this StudyInstanceUID")
    listing.add_argument("--status", choices=STATUSES, help="only reports in this status")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    show = action("show", cmd_show, "one report with its content and versions")
    show.add_argument("study", help="StudyInstanceUID")
    show.add_argument("report_id", type=int, help="report id")


def _show(result: dict | list) -> None:
    if isinstance(result, list):
        print_result(result)
    else:
        _print_report(result)


def _print_report(report: dict) -> None:
    print(
        f"report {report['id']} of study {report['study_instance_uid']}: {report['status']} "
        f"(version {report['version']}, template {report['template'] or '-'})"
    )
    if report["signed_by"]:
        print(f"signed by {report['signed_by']} at {report['signed_at']}")
    content = report["content"]
    for name, text in {**content.get("sections", {}), **content.get("values", {})}.items():
        print(f"  {name}: {text}")
    for addendum in content.get("addenda", []):
        print(
            f"  addendum ({addendum.get('author')}, {addendum.get('signed_at')}): {addendum['text']}"
        )
    for version in report["versions"]:
        stored = ""
        if version["sr_sop_instance_uid"]:
            stored = f" SR {version['sr_sop_instance_uid']} PDF {version['pdf_sop_instance_uid']}"
        print(f"  v{version['version']} {version['status']} by {version['author']}{stored}")
    for result in report.get("results_out", []):
        error = f" ({result['last_error']})" if result["last_error"] else ""
        print(
            f"  HL7 ORU^R01 of v{result['version']}: {result['state']} after "
            f"{result['attempts']} attempt(s){error}"
        )
