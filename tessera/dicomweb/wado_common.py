"""What every WADO-RS / WADO-URI handler shares: path UIDs, the caller's Scope and READ
permission, scoped resolution in a worker thread, and error answers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.auth.scope import Scope
from tessera.dicomweb.context import archive_of, scope_of
from tessera.dicomweb.errors import problem
from tessera.dicomweb.negotiation import AcceptError
from tessera.storage.transcode import TranscodeError
from tessera.storage.uids import uid_problem

T = TypeVar("T")

_UID_NAMES = {
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "instance": "SOPInstanceUID",
}


class WadoError(Exception):
    """A client error with its status (raised anywhere, answered by the handler)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    def response(self) -> Response:
        return problem(self.status, self.detail, self.headers)


def wado_endpoint(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """The route endpoint for a WADO handler: client errors raised anywhere become their
    answers (WadoError as given, a malformed Accept 400, an impossible conversion 406)."""

    @functools.wraps(handler)  # keeps the handler's module and name (conformance tables)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except WadoError as exc:
            return exc.response()
        except AcceptError as exc:
            return problem(400, str(exc))
        except TranscodeError as exc:
            return problem(406, str(exc))

    return endpoint


def path_uids(request: Request) -> tuple[str, str | None, str | None]:
    """(study, series, instance) UIDs from the path; 400 for a malformed one."""
    params = request.path_params
    for name, keyword in _UID_NAMES.items():
        value = params.get(name)
        if value is not None:
            reason = uid_problem(value)
            if reason:
                raise WadoError(400, f"{keyword} in the path is not a valid UID ({reason})")
    return params["study"], params.get("series"), params.get("instance")


def instance_path_uids(request: Request) -> tuple[str, str, str]:
    """`path_uids` of a route below .../instances/{instance} (all three are in its path)."""
    study, series, instance = path_uids(request)
    assert series is not None and instance is not None, "not an instance-level route"
    return study, series, instance


async def reader_scope(request: Request) -> Scope:
    scope = await scope_of(request)
    if not scope.can(permissions.READ):
        raise WadoError(403, f"this operation needs the '{permissions.READ}' permission")
    return scope


async def in_read_transaction(archive: Archive, work: Callable[..., T], *args: object) -> T:
    """Run `work(conn, *args)` in one read transaction, in a worker thread."""

    def run() -> T:
        with archive.database.read() as conn:
            return work(conn, *args)

    return await run_in_threadpool(run)


def not_found(study: str, series: str | None = None, instance: str | None = None) -> WadoError:
    what = f"study {study}"
    if series:
        what += f", series {series}"
    if instance:
        what += f", instance {instance}"
    return WadoError(404, f"no {what} here")


def not_acceptable(accept: str | None, what: str) -> WadoError:
    return WadoError(406, f"cannot send {what} as any of Accept: {accept or '(none)'}")


__all__ = [
    "WadoError",
    "archive_of",
    "in_read_transaction",
    "not_acceptable",
    "not_found",
    "path_uids",
    "reader_scope",
]
