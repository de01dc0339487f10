"""What every WADO-RS / WADO-URI handler shares: path UIDs, scoped resolution in a worker
thread, and the client errors it raises (answered by the app's exception-handler table)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tessera.archive import Archive
from tessera.dicomweb.context import archive_of
from tessera.dicomweb.errors import BadRequest, NotAcceptable, NotFound
from tessera.storage.uids import uid_problem

T = TypeVar("T")

_UID_NAMES = {
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "instance": "SOPInstanceUID",
}


def path_uids(request: Request) -> tuple[str, str | None, str | None]:
    """(study, series, instance) UIDs from the path; 400 for a malformed one."""
    params = request.path_params
    for name, keyword in _UID_NAMES.items():
        value = params.get(name)
        if value is not None:
            reason = uid_problem(value)
            if reason:
                raise BadRequest(f"{keyword} in the path is not a valid UID ({reason})")
    return params["study"], params.get("series"), params.get("instance")


def instance_path_uids(request: Request) -> tuple[str, str, str]:
    """`path_uids` of a route below .../instances/{instance} (all three are in its path)."""
    study, series, instance = path_uids(request)
    assert series is not None and instance is not None, "not an instance-level route"
    return study, series, instance


async def in_read_transaction(archive: Archive, work: Callable[..., T], *args: object) -> T:
    """Run `work(conn, *args)` in one read transaction, in a worker thread."""

    def run() -> T:
        with archive.database.read() as conn:
            return work(conn, *args)

    return await run_in_threadpool(run)


def not_found(study: str, series: str | None = None, instance: str | None = None) -> NotFound:
    what = f"study {study}"
    if series:
        what += f", series {series}"
    if instance:
        what += f", instance {instance}"
    return NotFound(f"no {what} here")


def not_acceptable(accept: str | None, what: str) -> NotAcceptable:
    return NotAcceptable(f"cannot send {what} as any of Accept: {accept or '(none)'}")


__all__ = [
    "archive_of",
    "in_read_transaction",
    "instance_path_uids",
    "not_acceptable",
    "not_found",
    "path_uids",
]
