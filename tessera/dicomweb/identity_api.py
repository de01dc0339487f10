"""Patient identities over the admin API: `{api}/patients/...` (docs/identity.md).

Look identities up, list a person's linked identities, link and unlink (with history and an
audit event in the same transaction), list link candidates; correct, merge and move studies
between identities, and undo those (tessera.services.identity_changes). Everything needs the
`identity` permission (the admin role holds it) and runs through the caller's Scope in SQL:
a source-locked caller sees, links and unlinks only identities their sources sent, and is
never told that other identities of the person exist.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.dicomweb.api_common import (
    audit_event,
    body_field,
    json_answer,
    json_body,
    read_in_thread,
    write_with_event,
)
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import BadRequest, NotFound
from tessera.dicomweb.gate import guarded
from tessera.dicomweb.urls import origin
from tessera.index import links
from tessera.index.identities import Identity, identities, identity, linked_group
from tessera.index.identity_changes import ChangeResult, change_history
from tessera.index.link_candidates import candidates
from tessera.index.query import Query
from tessera.index.query_attributes import Level
from tessera.index.query_sql import run_query
from tessera.scope import Scope
from tessera.services import identity_changes as changes_service


def _pk(text: str, what: str = "identity id") -> int:
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{what} must be a number, not {text[:40]!r}")
    return int(text)


def _visible(conn, scope: Scope, pk: int) -> Identity:
    found = identity(conn, scope, pk)
    if found is None:
        raise NotFound(f"no identity {pk}")
    return found


def _group_json(conn, scope: Scope, found: Identity) -> dict[str, object]:
    show_person = scope.source_pks is None
    group = linked_group(conn, scope, found)
    body: dict[str, object] = found.as_json(show_person)
    body["linked"] = [m.as_json(show_person) for m in group if m.pk != found.pk]
    return body


async def patients_search(request: Request) -> Response:
    scope = await scope_of(request)
    patient_id = request.query_params.get("patient_id")
    issuer = request.query_params.get("issuer_of_patient_id")
    if not patient_id:
        raise BadRequest("give 'patient_id' (and optionally 'issuer_of_patient_id')")
    found = await read_in_thread(
        request,
        lambda conn: identities(conn, scope, patient_id=patient_id, issuer_of_patient_id=issuer),
    )
    return json_answer([f.as_json(scope.source_pks is None) for f in found])


async def patient_get(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _pk(request.path_params["pk"])
    return json_answer(
        await read_in_thread(
            request, lambda conn: _group_json(conn, scope, _visible(conn, scope, pk))
        )
    )


async def links_create(request: Request) -> Response:
    """POST {"identity": other id, "reason"?}: the two identities are one person."""
    scope = await scope_of(request)
    pk = _pk(request.path_params["pk"])
    body = await json_body(request)
    other_pk = body_field(body, "identity", int)
    reason = body_field(body, "reason", required=False) or ""

    def work(conn):
        found = _visible(conn, scope, pk)
        _visible(conn, scope, other_pk)
        links.link(conn, scope.tenant_id, pk, other_pk, scope.principal, reason)
        return _group_json(conn, scope, _visible(conn, scope, found.pk))

    event = audit_event(request, "identity.link", f"{pk}-{other_pk}", {"reason": reason})
    return json_answer(await write_with_event(request, work, event), 201)


async def links_delete(request: Request) -> Response:
    """DELETE .../links/{other}?reason=: undo the link; the groups are as before it."""
    scope = await scope_of(request)
    pk = _pk(request.path_params["pk"])
    other_pk = _pk(request.path_params["other"])
    reason = request.query_params.get("reason", "")

    def work(conn):
        _visible(conn, scope, pk)
        _visible(conn, scope, other_pk)
        links.unlink(conn, scope.tenant_id, pk, other_pk, scope.principal, reason)
        return _group_json(conn, scope, _visible(conn, scope, pk))

    event = audit_event(request, "identity.unlink", f"{pk}-{other_pk}", {"reason": reason})
    return json_answer(await write_with_event(request, work, event))


async def history_get(request: Request) -> Response:
    """Link and unlink events of the person's visible identities, newest first (former
    links included)."""
    scope = await scope_of(request)
    pk = _pk(request.path_params["pk"])

    def work(conn):
        found = _visible(conn, scope, pk)
        group = [m.pk for m in linked_group(conn, scope, found)]
        events = links.history(conn, scope.tenant_id, group)
        # Both ends visible: a locked caller never learns of a hidden identity's links.
        named = sorted({p for e in events for p in e["identities"]})
        visible = {i.pk for i in identities(conn, scope, pks=named)}
        return [e for e in events if set(e["identities"]) <= visible]

    return json_answer(await read_in_thread(request, work))


async def candidates_get(request: Request) -> Response:
    scope = await scope_of(request)
    pk = _pk(request.path_params["pk"])
    return json_answer(
        await read_in_thread(
            request, lambda conn: candidates(conn, scope, _visible(conn, scope, pk))
        )
    )


async def studies_get(request: Request) -> Response:
    """A person's imaging history: the studies of the identity and of every identity linked
    to it that the caller may see, as QIDO-RS `/studies` answers them (DICOM JSON, newest
    first, each with its own Patient ID and Issuer and an Other Patient IDs Sequence naming
    the person's other visible identities). Works whatever the tenant's linked matching."""
    scope = await scope_of(request)
    pk = _pk(request.path_params["pk"])
    root = _dicomweb_root(request)

    def work(conn):
        found = _visible(conn, scope, pk)
        group = tuple(m.pk for m in linked_group(conn, scope, found))
        query = Query(Level.STUDY, patient_pks=group)
        return run_query(conn, scope, query, root).items

    return Response(
        orjson.dumps(await read_in_thread(request, work)), media_type="application/dicom+json"
    )


# -- corrections, moves, merges (tessera.services.identity_changes) ----------------------


async def _changed(
    request: Request,
    run: Callable[[Archive, Scope, str], ChangeResult],
    show: Callable[[ChangeResult], int | None],
) -> Response:
    """Run a change service in a worker thread; answer the change and the identity `show`
    names, as the caller sees it now."""
    scope = await scope_of(request)
    archive = archive_of(request)
    client = request.client
    remote = client.host if client else ""
    result = await run_in_threadpool(run, archive, scope, remote)
    shown = show(result)
    body: dict[str, object] = {"change": result.as_json()}
    if shown is not None:
        found = await read_in_thread(request, lambda conn: identity(conn, scope, shown))
        body["identity"] = None if found is None else found.as_json(scope.source_pks is None)
    return json_answer(body)


async def patient_correct(request: Request) -> Response:
    """PATCH {"patient_name"?, "patient_birth_date"?, "patient_sex"?, "patient_id"?,
    "issuer_of_patient_id"?, "reason"?}: correct the identity (its studies follow)."""
    pk = _pk(request.path_params["pk"])
    body = await json_body(request)
    reason = body_field(body, "reason", required=False) or ""
    values = {k: v for k, v in body.items() if k != "reason"}
    return await _changed(
        request,
        lambda archive, scope, remote: changes_service.correct_patient(
            archive, scope, pk, values, reason, remote
        ),
        lambda result: pk,
    )


async def patient_merge(request: Request) -> Response:
    """POST {"identity": merged-away id, "reason"?}: HL7 A40, the studies of that identity
    go to this one."""
    pk = _pk(request.path_params["pk"])
    body = await json_body(request)
    merged = body_field(body, "identity", int)
    reason = body_field(body, "reason", required=False) or ""
    return await _changed(
        request,
        lambda archive, scope, remote: changes_service.merge_patients(
            archive, scope, pk, merged, reason, remote
        ),
        lambda result: pk,
    )


async def study_move(request: Request) -> Response:
    """POST {"identity": target id, "reason"?}: the study belongs to that identity."""
    study = request.path_params["study"]
    body = await json_body(request)
    target = body_field(body, "identity", int)
    reason = body_field(body, "reason", required=False) or ""
    return await _changed(
        request,
        lambda archive, scope, remote: changes_service.move_study(
            archive, scope, study, target, reason, remote
        ),
        lambda result: target,
    )


async def change_undo(request: Request) -> Response:
    """POST {"reason"?}: undo a correction, move or merge."""
    change_id = _pk(request.path_params["change"], "change id")
    body = await json_body(request)
    reason = body_field(body, "reason", required=False) or ""
    return await _changed(
        request,
        lambda archive, scope, remote: changes_service.undo_change(
            archive, scope, change_id, reason, remote
        ),
        lambda result: None,
    )


async def changes_get(request: Request) -> Response:
    """Corrections, moves and merges of the identity (and of identities merged into it),
    newest first, with who undid them and when."""
    scope = await scope_of(request)
    pk = _pk(request.path_params["pk"])

    def work(conn):
        _visible(conn, scope, pk)
        return change_history(conn, scope, [pk])

    return json_answer(await read_in_thread(request, work))


def _dicomweb_root(request: Request) -> str:
    """The DICOMweb root of the tenant whose admin API root the request used."""
    prefix = request.headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
    path = request.url.path
    tenant_path = path[: path.find("/api/v1")] if "/api/v1" in path else ""
    return f"{origin(request)}{prefix}{tenant_path}/dicomweb"


IDENTITY, READ = permissions.IDENTITY, permissions.READ

# Each route's permission, checked at the gate (tessera.dicomweb.gate); link changes record
# their audit events in the transaction of the change (_write).
routes = [
    guarded("/patients", patients_search, methods=["GET"], permission=IDENTITY),
    guarded("/patients/{pk}", patient_get, methods=["GET"], permission=IDENTITY),
    guarded("/patients/{pk}/links", links_create, methods=["POST"], permission=IDENTITY),
    guarded("/patients/{pk}/links/{other}", links_delete, methods=["DELETE"], permission=IDENTITY),
    guarded("/patients/{pk}/history", history_get, methods=["GET"], permission=IDENTITY),
    guarded("/patients/{pk}/candidates", candidates_get, methods=["GET"], permission=IDENTITY),
    guarded("/patients/{pk}/studies", studies_get, methods=["GET"], permission=READ),
    guarded("/patients/{pk}", patient_correct, methods=["PATCH"], permission=IDENTITY),
    guarded("/patients/{pk}/merge", patient_merge, methods=["POST"], permission=IDENTITY),
    guarded("/patients/{pk}/changes", changes_get, methods=["GET"], permission=IDENTITY),
    guarded("/studies/{study}/patient", study_move, methods=["POST"], permission=IDENTITY),
    guarded("/identity-changes/{change}/undo", change_undo, methods=["POST"], permission=IDENTITY),
]
