"""The Starlette application: health, DICOMweb and admin routes, and a lifespan that opens
and closes the archive and access control. Sweeping orphan blobs is not done here: the CLI
(`tessera serve`, `tessera sweep` in tessera/cli.py) does it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ExceptionHandler

from tessera import __version__
from tessera.archive import Archive
from tessera.auth.authenticate import CHALLENGE, AuthenticationFailed
from tessera.auth.permissions import PermissionDenied
from tessera.config import Settings
from tessera.dicomweb import (
    admin_api,
    changes_api,
    changes_stream,
    documents,
    identity_api,
    me_api,
    notifications_api,
    orders_api,
    qido,
    reports_api,
    routes_api,
    stow,
    upload_sessions_api,
    ups_subscriptions,
    wado,
    webhooks_api,
    workitems,
)
from tessera.dicomweb.access import (
    SCOPE_KEY,
    AccessControl,
    AccessMiddleware,
    anonymous_enabled,
)
from tessera.dicomweb.api_common import json_answer
from tessera.dicomweb.cors import cors_middleware
from tessera.dicomweb.error_boundary import ErrorBoundary
from tessera.dicomweb.errors import ClientError, problem, storage_unavailable
from tessera.dicomweb.gate import denied_event
from tessera.dicomweb.negotiation import AcceptError
from tessera.dicomweb.request_limits import RequestLimits
from tessera.index.errors import Conflict as RowConflict
from tessera.index.errors import InvalidValue
from tessera.index.errors import NotFound as NoSuchRow
from tessera.index.peers import PeerError
from tessera.index.query import QueryError
from tessera.portal import Portal
from tessera.services.change_watch import ChangeWatcher
from tessera.services.delivery_worker import DeliveryWorker
from tessera.services.documents import DocumentRejected
from tessera.services.notification_job import NotificationJob
from tessera.services.reports import PreconditionRequired, ReportNotStored
from tessera.services.route_worker import RouteJob
from tessera.services.upload_sessions import SessionProblem
from tessera.storage.blobstore import StorageUnavailable
from tessera.storage.transcode import TranscodeError

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    archive: Archive = request.app.state.archive

    def check() -> None:
        with archive.database.read() as conn:
            conn.exec_driver_sql("SELECT 1")

    try:
        await run_in_threadpool(check)
    except Exception as exc:
        log.error("health check failed", extra={"reason": str(exc)})
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "version": __version__})


async def _not_found(request: Request, exc: Exception) -> Response:
    return problem(404, f"no resource at {request.url.path}")


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return problem(405, f"{request.method} is not supported on {request.url.path}")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    return problem(500, "internal error (logged)")


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    if isinstance(exc, OperationalError):
        # The database dropped the connection, restarts, or has no connection slot left.
        log.warning(
            "database unavailable", extra={"path": request.url.path, "error": str(exc)[:300]}
        )
        return storage_unavailable("database unavailable, retry later")
    return storage_unavailable(str(exc))


async def _unauthenticated(request: Request, exc: Exception) -> Response:
    detail = exc.detail if isinstance(exc, AuthenticationFailed) else "authentication required"
    return problem(401, detail, headers={"WWW-Authenticate": CHALLENGE})


async def _forbidden(request: Request, exc: Exception) -> Response:
    """A handler found the caller lacking (an admin handing out rights they do not hold);
    the route's own permission was already checked at the gate."""
    scope = request.scope.get(SCOPE_KEY)
    if scope is not None:
        request.app.state.access.audit.add(
            denied_event(
                request.scope,
                scope.tenant_id,
                scope.principal,
                {"permission": getattr(exc, "permission", "")},
            )
        )
    return problem(403, str(exc))


async def _client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return exc.response()


def _answer(status: int, fixed_detail: str | None = None) -> ExceptionHandler:
    """A handler answering `status` with the exception's text (or `fixed_detail`)."""

    async def handler(request: Request, exc: Exception) -> Response:
        return problem(status, fixed_detail or str(exc))

    return handler


async def _document_rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DocumentRejected)
    return problem(exc.status, exc.message)


async def _session_problem(request: Request, exc: Exception) -> Response:
    """An upload session refused: its status, with the refused instances when it names them."""
    assert isinstance(exc, SessionProblem)
    if exc.details:
        body = {"status": exc.status, "detail": exc.message, "instances": exc.details}
        return json_answer(body, exc.status)
    return problem(exc.status, exc.message)


async def _invalid_query(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueryError)
    return problem(400, f"invalid query parameter {exc.parameter!r}: {exc.reason}")


# Where an exception becomes a response: the ONE table. Starlette picks the entry of the
# exception's most specific class. Anything not here is a 500 (tessera.dicomweb.error_boundary).
EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {
    404: _not_found,
    405: _method_not_allowed,
    500: _server_error,
    AuthenticationFailed: _unauthenticated,
    PermissionDenied: _forbidden,
    ClientError: _client_error,
    # Lower layers' errors a client can cause.
    QueryError: _invalid_query,
    AcceptError: _answer(400),
    TranscodeError: _answer(406),
    NoSuchRow: _answer(404),
    RowConflict: _answer(409),
    IntegrityError: _answer(409, "conflicts with existing data"),
    # Values the index and auth layers refuse (names, roles, sources, passwords, peers).
    InvalidValue: _answer(400),
    PeerError: _answer(400),
    # Reports: a change that names no version; signed objects that could not be stored.
    PreconditionRequired: _answer(428),
    ReportNotStored: _answer(503),
    # Documents: the file or its target refused, with the status that says why.
    DocumentRejected: _document_rejected,
    # Upload sessions: the operation cannot be done, with the status that says why.
    SessionProblem: _session_problem,
    # Storage out of reach (object store, database): 503 with Retry-After.
    StorageUnavailable: _storage_unavailable,
    OperationalError: _storage_unavailable,
    # A bare ValueError is not here: it is a bug, and answers 500.
}


DEFAULT_DICOMWEB_ROOT = "/dicomweb"
ADMIN_API_ROOT = "/api/v1"
# Every tenant's roots: /t/{tenant}/dicomweb and /t/{tenant}/api/v1 (the default tenant is
# also served at /dicomweb and /api/v1). See docs/accounts.md.
TENANT_PREFIX = "/t/{tenant}"


def dicomweb_routes() -> list[BaseRoute]:
    """Every DICOMweb resource, with paths relative to a tenant's DICOMweb root."""
    return [
        *stow.routes,
        *documents.routes,
        *upload_sessions_api.dicomweb_routes,
        *qido.routes,
        *wado.routes,
        *workitems.routes,
        *ups_subscriptions.routes,
    ]


def api_routes() -> list[BaseRoute]:
    """The REST API under a tenant's `/api/v1`: admin, orders, upload sessions, change feed,
    webhooks, routes, notifications, reports, identity."""
    return [
        *admin_api.routes,
        *me_api.routes,
        *orders_api.routes,
        *documents.api_routes,
        *upload_sessions_api.api_routes,
        *changes_api.routes,
        *changes_stream.routes,
        *webhooks_api.routes,
        *routes_api.routes,
        *notifications_api.routes,
        *reports_api.routes,
        *identity_api.routes,
    ]


def app_from_environment() -> Starlette:
    """The application as a uvicorn worker builds it (settings from TESSERA_* variables;
    the parent process has migrated the schema before starting them)."""
    from tessera.config import load_settings
    from tessera.log import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def create_app(settings: Settings, archive: Archive | None = None) -> Starlette:
    """The application over `archive`, or over an archive its lifespan opens and closes
    (the index must be migrated: `tessera migrate`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = archive if archive is not None else await run_in_threadpool(Archive.open, settings)
        app.state.archive = opened
        app.state.access = AccessControl.open(opened)
        app.state.change_watcher = ChangeWatcher(opened.database)
        worker = DeliveryWorker(opened) if settings.delivery_worker else None
        if worker is not None:
            worker.jobs.append(RouteJob(opened))
            worker.jobs.append(NotificationJob(opened))
            worker.start()
        log.info(
            "serving DICOMweb",
            extra={"dicomweb_root": f"http://{settings.host}:{settings.port}/dicomweb"},
        )
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await app.state.change_watcher.close()
            if archive is None:  # closing the archive flushes its audit log
                opened.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Mount(DEFAULT_DICOMWEB_ROOT, routes=dicomweb_routes()),
        Mount(ADMIN_API_ROOT, routes=api_routes()),
        Mount(
            TENANT_PREFIX,
            routes=[
                Mount(DEFAULT_DICOMWEB_ROOT, routes=dicomweb_routes()),
                Mount(ADMIN_API_ROOT, routes=api_routes()),
            ],
        ),
    ]
    viewer_path = None
    if settings.viewer:
        from tessera.dicomweb.viewer import Viewer
        from tessera.dicomweb.viewer_install import viewer_folder

        viewer = Viewer(viewer_folder(settings.viewer), dicomweb_path=DEFAULT_DICOMWEB_ROOT)
        routes += viewer.routes()
        viewer_path = viewer.mount_path
    routes += Portal(viewer_path, anonymous=anonymous_enabled(settings)).routes()
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        # CORS outside (preflights, 401s and 500s carry CORS headers); then the error boundary
        # (a 500 keeps the connection open); then access control, which authenticates every
        # request and leaves its Scope for `context.scope_of`.
        middleware=[
            *cors_middleware(settings),
            Middleware(ErrorBoundary),
            Middleware(RequestLimits, settings=settings),
            Middleware(AccessMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
