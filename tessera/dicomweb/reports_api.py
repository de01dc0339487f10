"""Reports over REST (JSON), under the tenant's API root (`/api/v1`, `/t/{tenant}/api/v1`):

    GET  /studies/{StudyInstanceUID}/reports                      read
    POST /studies/{StudyInstanceUID}/reports                      report.write
    GET  /studies/{StudyInstanceUID}/reports/{id}                 read
    PUT  /studies/{StudyInstanceUID}/reports/{id}                 report.write, If-Match
    POST /studies/{StudyInstanceUID}/reports/{id}/sign            report.sign, If-Match
    POST /studies/{StudyInstanceUID}/reports/{id}/addenda         report.sign, If-Match
    GET  /report-templates, /report-templates/{name}              read
    PUT  /report-templates/{name}                                 admin

The ETag of a report is its version; a change names it in If-Match (or "version" in the
body). Each route declares its permission at the gate (`tessera.dicomweb.gate`); the rules
live in `tessera.services.reports`, whose errors the app's one error table answers (400,
404, 409, 428, 503); this module only translates.
"""

from __future__ import annotations

import dataclasses

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.dicomweb.api_common import json_answer, json_body
from tessera.dicomweb.context import archive_of, identity_of, scope_of
from tessera.dicomweb.errors import BadRequest
from tessera.dicomweb.gate import guarded
from tessera.index.clock import iso
from tessera.scope import Scope
from tessera.services import reports as service
from tessera.services.report_templates import Template


async def _caller(request: Request) -> Scope:
    """The caller's Scope, acting under their user name (authors and signers are recorded,
    and signers are named in the SR, by user name, not by credential)."""
    scope = await scope_of(request)
    identity = identity_of(request)
    if identity is not None and identity.username:
        return dataclasses.replace(scope, principal=identity.username)
    return scope


def _report_id(request: Request) -> int:
    raw = request.path_params["report"]
    if not raw.isdigit() or len(raw) > 18:
        raise service.ReportNotFound(f"no report {raw!r}")
    return int(raw)


def expected_version(request: Request, body: dict) -> int | None:
    """The version a change is based on: If-Match ("3", W/"3") or the body's "version"."""
    header = request.headers.get("if-match")
    if header is not None:
        tag = header.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        tag = tag.strip('"')
        if not tag.isdigit() or len(tag) > 9:
            raise BadRequest(f'If-Match {header!r} is not a report version (e.g. "3")')
        return int(tag)
    version = body.get("version")
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadRequest("'version' must be an integer")
    return version


def report_json(view: service.ReportView) -> dict:
    report = view.report
    return {
        "id": report.id,
        "study_instance_uid": report.study_instance_uid,
        "status": report.status,
        "version": report.version,
        "template": report.template_name,
        "created_by": report.created_by,
        "created_at": iso(report.created_at),
        "updated_at": iso(report.updated_at),
        "signed_by": report.signed_by,
        "signed_at": iso(report.signed_at),
        "content": view.current.content,
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "author": v.author,
                "created_at": iso(v.created_at),
                "signed_by": v.signed_by,
                "signed_at": iso(v.signed_at),
                "sr_sop_instance_uid": v.sr_sop_instance_uid if v.stored else None,
                "pdf_sop_instance_uid": v.pdf_sop_instance_uid if v.stored else None,
            }
            for v in view.versions
        ],
    }


def _answer(view: service.ReportView, status: int = 200) -> Response:
    return json_answer(report_json(view), status, headers={"ETag": f'"{view.report.version}"'})


def template_json(template: Template) -> dict:
    return {**template.document, "builtin": template.builtin}


async def reports_list(request: Request) -> Response:
    scope = await _caller(request)
    views = await run_in_threadpool(
        service.study_reports, archive_of(request), scope, request.path_params["study"]
    )
    return json_answer([report_json(view) for view in views])


async def reports_create(request: Request) -> Response:
    scope = await _caller(request)
    body = await json_body(request)
    view = await run_in_threadpool(
        service.create_report, archive_of(request), scope, request.path_params["study"], body
    )
    return _answer(view, 201)


async def reports_get(request: Request) -> Response:
    scope = await _caller(request)
    view = await run_in_threadpool(
        service.get_report,
        archive_of(request),
        scope,
        request.path_params["study"],
        _report_id(request),
    )
    return _answer(view)


async def reports_edit(request: Request) -> Response:
    scope = await _caller(request)
    body = await json_body(request)
    view = await run_in_threadpool(
        service.edit_report,
        archive_of(request),
        scope,
        request.path_params["study"],
        _report_id(request),
        expected_version(request, body),
        body,
    )
    return _answer(view)


async def reports_sign(request: Request) -> Response:
    scope = await _caller(request)
    body = await json_body(request)
    view = await run_in_threadpool(
        service.sign_report,
        archive_of(request),
        scope,
        request.path_params["study"],
        _report_id(request),
        expected_version(request, body),
    )
    return _answer(view)


async def reports_addendum(request: Request) -> Response:
    scope = await _caller(request)
    body = await json_body(request)
    view = await run_in_threadpool(
        service.add_addendum,
        archive_of(request),
        scope,
        request.path_params["study"],
        _report_id(request),
        expected_version(request, body),
        body,
    )
    return _answer(view, 201)


async def templates_list(request: Request) -> Response:
    scope = await _caller(request)
    templates = await run_in_threadpool(service.list_templates, archive_of(request), scope)
    return json_answer([template_json(t) for t in templates])


async def templates_get(request: Request) -> Response:
    scope = await _caller(request)
    template = await run_in_threadpool(
        service.get_template, archive_of(request), scope, request.path_params["name"]
    )
    return json_answer(template_json(template))


async def templates_put(request: Request) -> Response:
    scope = await _caller(request)
    body = await json_body(request)
    added = await run_in_threadpool(
        service.put_template, archive_of(request), scope, request.path_params["name"], body
    )
    return json_answer({"name": request.path_params["name"], "added": added}, 201 if added else 200)


REPORT = "/studies/{study}/reports/{report}"
READ, WRITE, SIGN = permissions.READ, permissions.REPORT_WRITE, permissions.REPORT_SIGN
routes = [
    guarded("/studies/{study}/reports", reports_list, methods=["GET"], permission=READ),
    guarded("/studies/{study}/reports", reports_create, methods=["POST"], permission=WRITE),
    guarded(REPORT, reports_get, methods=["GET"], permission=READ),
    guarded(REPORT, reports_edit, methods=["PUT"], permission=WRITE),
    guarded(f"{REPORT}/sign", reports_sign, methods=["POST"], permission=SIGN),
    guarded(f"{REPORT}/addenda", reports_addendum, methods=["POST"], permission=SIGN),
    guarded("/report-templates", templates_list, methods=["GET"], permission=READ),
    guarded("/report-templates/{name}", templates_get, methods=["GET"], permission=READ),
    guarded(
        "/report-templates/{name}", templates_put, methods=["PUT"], permission=permissions.ADMIN
    ),
]
