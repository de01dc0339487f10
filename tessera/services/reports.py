"""Reports: draft, edit, sign, amend (issue 16). One place for every report rule.

Statuses: DRAFT and PRELIMINARY reports are edited (each edit is a new version); signing
(`report.sign`) makes a report FINAL and stores it in its study as a Structured Report and an
Encapsulated PDF; a signed report never changes again: an addendum (also `report.sign`) is a
new, signed version (AMENDED) whose SR names its predecessor.

Every change names the version it was based on (If-Match); a stale version is refused with
ReportConflict, so of two concurrent edits of one draft the second gets 409 (no lost update).
The study is found through the caller's Scope in SQL: a hidden study is ReportNotFound.

Results out: with `hl7_results_endpoint` set, the same transaction queues the version's
HL7 ORU^R01 (services/report_results.py).

Hook point for the workflow branches: `report_signed` runs inside the transaction that
records a signed (or amended) version as stored; orders (REPORTED/FINAL) and the change feed
(`defer_change`: recorded at commit) are wired there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.auth.audit import Event, record_now
from tessera.auth.permissions import PermissionDenied
from tessera.index import changes
from tessera.index import reports as rows
from tessera.index.clock import utcnow
from tessera.index.errors import Conflict, NotFound
from tessera.index.orders import FINAL, REPORTED
from tessera.scope import Scope
from tessera.services.orders import report_moves_orders
from tessera.services.report_results import queue_result
from tessera.services.report_templates import (
    InvalidReport,
    Template,
    builtin_templates,
    parse_template,
    validate_content,
)

log = logging.getLogger(__name__)


class ReportNotFound(NotFound):
    """No such report (or study) in the caller's Scope (404)."""


class ReportConflict(Conflict):
    """The report changed since the version named, or its status forbids the change (409)."""


class PreconditionRequired(Exception):
    """A change did not name the version it is based on (428)."""


class ReportNotStored(Exception):
    """The signed report's DICOM objects could not be stored; the signature was undone
    (503)."""


@dataclass(frozen=True)
class ReportView:
    report: rows.ReportRow
    versions: list[rows.VersionRow]

    @property
    def current(self) -> rows.VersionRow:
        return self.versions[-1]


@dataclass(frozen=True)
class SignedReport:
    """What `report_signed` is told about a newly signed (or amended) report."""

    tenant_id: int
    # The source the SR and PDF were stored under (what a change feed entry is bound to).
    source_pk: int
    study_pk: int
    study_instance_uid: str
    report_id: int
    version: int
    status: str
    signed_by: str
    signed_at: datetime
    sr_sop_instance_uid: str
    pdf_sop_instance_uid: str


def report_signed(conn: Connection, signed: SignedReport) -> None:
    """Called in the transaction that records a signed version as stored: the study's
    orders become FINAL (an addendum keeps them FINAL), and the change feed gets its
    `report.signed` entry in that same transaction (bound to the report's source, so a
    caller locked elsewhere never sees it)."""
    what = "addendum" if signed.status == rows.AMENDED else "report"
    report_moves_orders(
        conn,
        signed.tenant_id,
        signed.study_pk,
        FINAL,
        signed.signed_by,
        f"{what} {signed.report_id} version {signed.version} signed",
    )
    changes.defer_change(
        conn,
        signed.tenant_id,
        signed.source_pk,
        changes.REPORT_SIGNED,
        signed.study_instance_uid,
        sop_instance_uid=signed.sr_sop_instance_uid,
        detail={
            "report_id": signed.report_id,
            "version": signed.version,
            "status": signed.status,
            "pdf_sop_instance_uid": signed.pdf_sop_instance_uid,
        },
    )
    log.info(
        "report signed",
        extra={
            "study_instance_uid": signed.study_instance_uid,
            "report_id": signed.report_id,
            "status": signed.status,
        },
    )


def _audit(
    conn: Connection,
    scope: Scope,
    action: str,
    target: str,
    report_id: int | None = None,
    version: int | None = None,
    status: str | None = None,
) -> None:
    """The change's audit event (`report.create`, `.edit`, `.sign`, `.addendum`,
    `report.template.save`), written in the transaction of the change, as admin changes."""
    detail = {"report_id": report_id, "version": version, "status": status}
    event = Event(
        scope.tenant_id,
        scope.principal,
        action,
        "ok",
        target=target,
        detail={k: v for k, v in detail.items() if v is not None},
    )
    record_now(conn, [event])


def _need(scope: Scope, permission: str) -> None:
    if not scope.can(permission):
        raise PermissionDenied(permission)


def _study(conn: Connection, scope: Scope, study_instance_uid: str) -> rows.VisibleStudy:
    study = rows.visible_study(conn, scope, study_instance_uid)
    if study is None:
        raise ReportNotFound(f"no study {study_instance_uid}")
    return study


def _view(conn: Connection, scope: Scope, study_instance_uid: str, report_id: int) -> ReportView:
    report = rows.report_in_study(conn, scope, study_instance_uid, report_id)
    if report is None:
        raise ReportNotFound(f"no report {report_id} in study {study_instance_uid}")
    return ReportView(report, rows.versions_of(conn, report.id))


# Templates ---------------------------------------------------------------------------------


def template_named(conn: Connection, tenant_id: int, name: str) -> Template | None:
    builtin = builtin_templates().get(name)
    if builtin is not None:
        return builtin
    document = rows.tenant_template(conn, tenant_id, name)
    return None if document is None else parse_template(document)


def list_templates(archive: Archive, scope: Scope) -> list[Template]:
    _need(scope, permissions.READ)
    with archive.database.read() as conn:
        own = [parse_template(d) for d in rows.tenant_templates(conn, scope.tenant_id)]
    return [*builtin_templates().values(), *own]


def get_template(archive: Archive, scope: Scope, name: str) -> Template:
    _need(scope, permissions.READ)
    with archive.database.read() as conn:
        template = template_named(conn, scope.tenant_id, name)
    if template is None:
        raise ReportNotFound(f"no report template {name!r}")
    return template


def put_template(archive: Archive, scope: Scope, name: str, document: object) -> bool:
    """Add or replace a tenant's template (admin); True when added. Shipped ones are fixed."""
    _need(scope, permissions.ADMIN)
    template = parse_template(document)
    if template.name != name:
        raise InvalidReport("name", f"the document is named {template.name!r}, not {name!r}")
    if name in builtin_templates():
        raise ReportConflict(f"{name!r} is a shipped template; choose another name")
    with archive.database.write() as conn:
        added = rows.put_template(conn, scope.tenant_id, name, template.document)
        _audit(conn, scope, "report.template.save", name)
        return added


# Reading -----------------------------------------------------------------------------------


def study_reports(archive: Archive, scope: Scope, study_instance_uid: str) -> list[ReportView]:
    _need(scope, permissions.READ)
    with archive.database.read() as conn:
        _study(conn, scope, study_instance_uid)
        return [
            ReportView(report, rows.versions_of(conn, report.id))
            for report in rows.reports_of_study(conn, scope, study_instance_uid)
        ]


def get_report(
    archive: Archive, scope: Scope, study_instance_uid: str, report_id: int
) -> ReportView:
    _need(scope, permissions.READ)
    with archive.database.read() as conn:
        return _view(conn, scope, study_instance_uid, report_id)


def list_reports(
    archive: Archive, scope: Scope, status: str | None = None, limit: int = 100
) -> list[rows.ReportRow]:
    _need(scope, permissions.READ)
    if status is not None and status not in rows.STATUSES:
        raise InvalidReport("status", f"one of {', '.join(rows.STATUSES)}")
    with archive.database.read() as conn:
        return rows.list_reports(conn, scope, status, limit)


# Drafting ----------------------------------------------------------------------------------


def _draft_status(body: dict, default: str) -> str:
    status = body.get("status", default)
    if status not in rows.EDITABLE:
        raise InvalidReport(
            "status", f"a draft is DRAFT or PRELIMINARY (sign to make it {rows.FINAL})"
        )
    return status


def create_report(
    archive: Archive, scope: Scope, study_instance_uid: str, body: dict
) -> ReportView:
    _need(scope, permissions.REPORT_WRITE)
    status = _draft_status(body, rows.DRAFT)
    template_name = body.get("template")
    if template_name is not None and not isinstance(template_name, str):
        raise InvalidReport("template", "must be a template name")
    with archive.database.write() as conn:
        study = _study(conn, scope, study_instance_uid)
        template = None
        if template_name is not None:
            template = template_named(conn, scope.tenant_id, template_name)
            if template is None:
                raise InvalidReport("template", f"no report template {template_name!r}")
        content = validate_content(template, body, complete=False)
        report_id = rows.insert_report(
            conn, scope.tenant_id, study.pk, status, template_name, content, scope.principal
        )
        _audit(conn, scope, "report.create", study_instance_uid, report_id, 1, status)
        _preliminary(conn, scope, study.pk, report_id, status)
        return _view(conn, scope, study_instance_uid, report_id)


def _preliminary(
    conn: Connection, scope: Scope, study_pk: int, report_id: int, status: str
) -> None:
    """A PRELIMINARY report (a read not signed yet) makes the study's orders REPORTED."""
    if status == rows.PRELIMINARY:
        report_moves_orders(
            conn,
            scope.tenant_id,
            study_pk,
            REPORTED,
            scope.principal,
            f"report {report_id} preliminary",
        )


def _expect(expected_version: int | None) -> int:
    if expected_version is None:
        raise PreconditionRequired(
            'name the version this change is based on (If-Match: "<version>")'
        )
    return expected_version


def _check_current(view: ReportView, expected: int, allowed: tuple[str, ...], verb: str) -> None:
    if view.report.status not in allowed:
        if view.report.status in rows.EDITABLE:
            raise ReportConflict(f"report {view.report.id} is not signed yet: sign it first")
        raise ReportConflict(
            f"report {view.report.id} is {view.report.status}: a signed report never changes "
            "(add an addendum)"
            if verb != "addendum"
            else f"report {view.report.id} is {view.report.status}"
        )
    if view.report.version != expected:
        raise ReportConflict(
            f"report {view.report.id} is at version {view.report.version}, not {expected}: "
            "reload it and apply the change again"
        )


def _template_of(conn: Connection, scope: Scope, view: ReportView) -> Template | None:
    if view.report.template_name is None:
        return None
    template = template_named(conn, scope.tenant_id, view.report.template_name)
    if template is None:
        raise ReportConflict(f"report template {view.report.template_name!r} no longer exists")
    return template


def edit_report(
    archive: Archive,
    scope: Scope,
    study_instance_uid: str,
    report_id: int,
    expected_version: int | None,
    body: dict,
) -> ReportView:
    _need(scope, permissions.REPORT_WRITE)
    expected = _expect(expected_version)
    with archive.database.write() as conn:
        view = _view(conn, scope, study_instance_uid, report_id)
        _check_current(view, expected, rows.EDITABLE, "edit")
        if "template" in body and body["template"] != view.report.template_name:
            raise InvalidReport("template", "a report's template is chosen when it is created")
        status = _draft_status(body, view.report.status)
        content = validate_content(_template_of(conn, scope, view), body, complete=False)
        at = utcnow()
        if not rows.advance(conn, report_id, expected, rows.EDITABLE, status, at):
            raise ReportConflict(f"report {report_id} changed meanwhile: reload it")
        rows.insert_version(conn, report_id, expected + 1, status, content, scope.principal, at)
        _audit(conn, scope, "report.edit", study_instance_uid, report_id, expected + 1, status)
        if status == rows.PRELIMINARY:
            study_pk = _study(conn, scope, study_instance_uid).pk
            _preliminary(conn, scope, study_pk, report_id, status)
        return _view(conn, scope, study_instance_uid, report_id)


# Signing -----------------------------------------------------------------------------------


def sign_report(
    archive: Archive,
    scope: Scope,
    study_instance_uid: str,
    report_id: int,
    expected_version: int | None,
) -> ReportView:
    """Sign a draft: FINAL, the signer and time recorded, SR + PDF stored in the study."""
    _need(scope, permissions.REPORT_SIGN)
    expected = _expect(expected_version)
    with archive.database.read() as conn:
        view = _view(conn, scope, study_instance_uid, report_id)
        _check_current(view, expected, rows.EDITABLE, "sign")
        template = _template_of(conn, scope, view)
        content = validate_content(template, view.current.content, complete=True)
    return _sign(archive, scope, study_instance_uid, view, template, content, rows.FINAL)


def add_addendum(
    archive: Archive,
    scope: Scope,
    study_instance_uid: str,
    report_id: int,
    expected_version: int | None,
    body: dict,
) -> ReportView:
    """Amend a signed report: a new signed version with the addendum (AMENDED)."""
    _need(scope, permissions.REPORT_SIGN)
    expected = _expect(expected_version)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidReport("text", "an addendum needs its text")
    if len(text) > 65_536:
        raise InvalidReport("text", "longer than 65536 characters")
    with archive.database.read() as conn:
        view = _view(conn, scope, study_instance_uid, report_id)
        _check_current(view, expected, (rows.FINAL, rows.AMENDED), "addendum")
        template = _template_of(conn, scope, view)
    content = dict(view.current.content)
    content["addenda"] = [
        *content.get("addenda", []),
        {"text": text, "author": scope.principal},
    ]
    return _sign(archive, scope, study_instance_uid, view, template, content, rows.AMENDED)


def _sign(
    archive: Archive,
    scope: Scope,
    study_instance_uid: str,
    view: ReportView,
    template: Template | None,
    content: dict,
    status: str,
) -> ReportView:
    from tessera.services.report_store import ReportObjects, store_report_objects

    report = view.report
    expected = report.version
    version = expected + 1
    signed_at = utcnow()
    if content.get("addenda"):
        content["addenda"][-1]["signed_at"] = signed_at.isoformat()
    predecessor = next(
        (v for v in reversed(view.versions) if v.stored and v.sr_sop_instance_uid), None
    )
    with archive.database.read() as conn:
        organization = rows.organization_of(conn, scope.tenant_id)
    objects = ReportObjects.new(
        template, content, status, scope.principal, organization, signed_at, predecessor, version
    )
    from_statuses = rows.EDITABLE if status == rows.FINAL else (rows.FINAL, rows.AMENDED)
    with archive.database.write() as conn:
        study = _study(conn, scope, study_instance_uid)
        if not rows.advance(
            conn,
            report.id,
            expected,
            from_statuses,
            status,
            signed_at,
            signed_by=scope.principal,
            signed_at=signed_at,
        ):
            raise ReportConflict(f"report {report.id} changed meanwhile: reload it")
        rows.insert_version(
            conn,
            report.id,
            version,
            status,
            content,
            scope.principal,
            signed_at,
            signed_by=scope.principal,
            signed_at=signed_at,
            sr_sop_instance_uid=objects.sr_sop_instance_uid,
            pdf_sop_instance_uid=objects.pdf_sop_instance_uid,
            series_instance_uid=objects.series_instance_uid,
            sr_sop_class_uid=objects.sr_sop_class_uid,
        )
        study_attributes = rows.study_attributes(conn, study.pk)
    try:
        store_report_objects(archive, scope.tenant_id, study.source_pk, study_attributes, objects)
    except Exception as exc:
        log.exception("report objects not stored", extra={"report_id": report.id})
        with archive.database.write() as conn:
            rows.undo_version(conn, report.id, version, report)
        raise ReportNotStored(f"report {report.id} could not be stored: {exc}") from exc
    with archive.database.write() as conn:
        rows.mark_stored(conn, report.id, version)
        action = "report.sign" if status == rows.FINAL else "report.addendum"
        _audit(conn, scope, action, study_instance_uid, report.id, version, status)
        queue_result(
            conn,
            archive,
            scope.tenant_id,
            organization,
            report.id,
            version,
            status,
            scope.principal,
            signed_at,
            objects.document_code,
            study_attributes,
            objects.items,
        )
        report_signed(
            conn,
            SignedReport(
                scope.tenant_id,
                study.source_pk,
                study.pk,
                study_instance_uid,
                report.id,
                version,
                status,
                scope.principal,
                signed_at,
                objects.sr_sop_instance_uid,
                objects.pdf_sop_instance_uid,
            ),
        )
        return _view(conn, scope, study_instance_uid, report.id)
