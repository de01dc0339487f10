"""Upload sessions over REST ("upload later"; tessera/services/upload_sessions.py).

Admin API root (`{api}` = /api/v1 or /t/{tenant}/api/v1), JSON:

    POST   {api}/upload-sessions               open one: {"description", "source", "expires_in_seconds"}
    GET    {api}/upload-sessions               the caller's sessions
    GET    {api}/upload-sessions/{id}          what one holds (patients, studies, series, problems)
    PATCH  {api}/upload-sessions/{id}          {"description"}
    POST   {api}/upload-sessions/{id}/commit   make everything visible, in one transaction
    POST   {api}/upload-sessions/{id}/discard  throw everything away (also DELETE {id})

DICOMweb root: STOW-RS into a session (same request forms and response as STOW-RS):

    POST   {root}/upload-sessions/{id}/studies
    POST   {root}/upload-sessions/{id}/studies/{StudyInstanceUID}

Every operation needs the `upload` permission and finds only the caller's own sessions of
the caller's tenant (another user's or tenant's session is 404), and the sessions a staged
DIMSE peer filled, of sources the caller reads and uploads to (the reviewed listener).
"""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.auth import permissions
from tessera.dicomweb import stow
from tessera.dicomweb.api_common import json_answer, json_body
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.gate import AUDIT_UPLOAD, guarded
from tessera.index.clock import iso
from tessera.services import upload_sessions as sessions
from tessera.services.ingest import StoreOutcome


def _text(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise sessions.SessionProblem(400, f"'{name}' must be a string")
    return value


async def create(request: Request) -> Response:
    body = await json_body(request)
    expires = body.get("expires_in_seconds")
    if expires is not None and (not isinstance(expires, int) or isinstance(expires, bool)):
        raise sessions.SessionProblem(400, "'expires_in_seconds' must be an integer")
    archive, scope = archive_of(request), await scope_of(request)
    session = await run_in_threadpool(
        sessions.open_session,
        archive,
        scope,
        _text(body, "description") or "",
        _text(body, "source"),
        expires,
    )
    view = await run_in_threadpool(sessions.describe, archive, scope, session.public_id)
    return json_answer(view.as_json(), 201)


async def list_all(request: Request) -> Response:
    archive, scope = archive_of(request), await scope_of(request)
    found = await run_in_threadpool(sessions.list_for, archive, scope)
    return json_answer(
        [
            {
                "id": s.public_id,
                "state": s.state,
                "description": s.description,
                "owner": s.owner,
                "received_from": s.received_from,
                "created_at": iso(s.created_at),
                "expires_at": iso(s.expires_at),
            }
            for s in found
        ]
    )


async def get_one(request: Request) -> Response:
    archive, scope = archive_of(request), await scope_of(request)
    view = await run_in_threadpool(
        sessions.describe, archive, scope, request.path_params["session"]
    )
    return json_answer(view.as_json())


async def update(request: Request) -> Response:
    body = await json_body(request)
    description = _text(body, "description")
    if description is None:
        raise sessions.SessionProblem(400, "'description' is required")
    archive, scope = archive_of(request), await scope_of(request)
    public_id = request.path_params["session"]
    await run_in_threadpool(sessions.update_description, archive, scope, public_id, description)
    view = await run_in_threadpool(sessions.describe, archive, scope, public_id)
    return json_answer(view.as_json())


async def commit(request: Request) -> Response:
    archive, scope = archive_of(request), await scope_of(request)
    result = await run_in_threadpool(
        sessions.commit, archive, scope, request.path_params["session"]
    )
    return json_answer(
        {
            "id": request.path_params["session"],
            "state": "committed",
            "instances": result.instances,
            "already_stored": result.already_stored,
            "studies": result.studies,
        }
    )


async def discard(request: Request) -> Response:
    archive, scope = archive_of(request), await scope_of(request)
    removed = await run_in_threadpool(
        sessions.discard, archive, scope, request.path_params["session"]
    )
    return json_answer(
        {"id": request.path_params["session"], "state": "discarded", "instances": removed}
    )


async def store_into_session(request: Request) -> Response:
    """STOW-RS whose instances go into the session instead of the archive."""
    archive, scope = archive_of(request), await scope_of(request)
    public_id = request.path_params["session"]
    # Refused before the body is read: a session that is not the caller's, or closed.
    await run_in_threadpool(sessions.usable_session, archive, scope, public_id)

    def store(path: Path, sha256: str, target_study: str | None) -> StoreOutcome:
        return sessions.add_file(archive, scope, public_id, path, sha256, target_study)

    request.scope[stow.STORE_INTO] = store
    return await stow.store_instances(request)


api_routes = [
    guarded("/upload-sessions", create, methods=["POST"], permission=permissions.UPLOAD),
    guarded("/upload-sessions", list_all, methods=["GET"], permission=permissions.UPLOAD),
    guarded("/upload-sessions/{session}", get_one, methods=["GET"], permission=permissions.UPLOAD),
    guarded("/upload-sessions/{session}", update, methods=["PATCH"], permission=permissions.UPLOAD),
    guarded(
        "/upload-sessions/{session}", discard, methods=["DELETE"], permission=permissions.UPLOAD
    ),
    guarded(
        "/upload-sessions/{session}/commit", commit, methods=["POST"], permission=permissions.UPLOAD
    ),
    guarded(
        "/upload-sessions/{session}/discard",
        discard,
        methods=["POST"],
        permission=permissions.UPLOAD,
    ),
]
dicomweb_routes = [
    guarded(
        "/upload-sessions/{session}/studies",
        store_into_session,
        methods=["POST"],
        permission=permissions.UPLOAD,
        action=AUDIT_UPLOAD,
    ),
    guarded(
        "/upload-sessions/{session}/studies/{study}",
        store_into_session,
        methods=["POST"],
        permission=permissions.UPLOAD,
    ),
]
