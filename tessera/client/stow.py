"""A STOW-RS client for scripts: `tessera upload FILES_OR_FOLDERS`.

Files are grouped into requests (by count and size), sent several at a time, streamed from
disk, and every instance's outcome is read from the Store Instances response.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tessera.dicomweb import multipart_writer
from tessera.dicomweb.grouping import by_size
from tessera.dicomweb.media_type import DICOM, DICOM_JSON

_CHUNK = 1024 * 1024


def multipart_stream(paths: list[Path], boundary: str) -> Iterator[bytes]:
    """multipart/related body with one application/dicom part per file, read in chunks."""
    for path in paths:
        yield multipart_writer.part_header(boundary, DICOM)
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
        yield multipart_writer.PART_END
    yield multipart_writer.closing(boundary)


def request_content_type(boundary: str) -> str:
    """The Content-Type of a Store Instances request: application/dicom parts."""
    return multipart_writer.content_type(DICOM, boundary)


def find_files(paths: list[Path]) -> list[Path]:
    """Files given, plus every file under the folders given (hidden files skipped)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


def batches(files: list[Path], max_files: int, max_bytes: int) -> list[list[Path]]:
    """Files in request-sized groups (at most `max_files` files and about `max_bytes`)."""
    return list(by_size(files, lambda path: path.stat().st_size, max_bytes, max_files))


@dataclass
class UploadSummary:
    stored: int = 0
    already_stored: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file or UID, reason)
    bytes_sent: int = 0


def _failure_text(item: dict) -> str:
    code = item.get("00081197", {}).get("Value", [None])[0]
    comment = item.get("00000902", {}).get("Value", [""])[0]
    return f"0x{code:04X} {comment}".strip() if isinstance(code, int) else comment or "failed"


def post_batch(
    client: httpx.Client, url: str, paths: list[Path]
) -> tuple[int, list[tuple[str, str]]]:
    """Send one request; returns (instances stored, failures)."""
    boundary = multipart_writer.new_boundary()
    response = client.post(
        url,
        content=multipart_stream(paths, boundary),
        headers={"Content-Type": request_content_type(boundary), "Accept": DICOM_JSON},
    )
    names = ", ".join(p.name for p in paths[:3]) + ("..." if len(paths) > 3 else "")
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict) or ("00081199" not in body and "00081198" not in body):
        detail = body.get("detail") if isinstance(body, dict) else None
        reason = f"HTTP {response.status_code}: {detail or response.text[:200]}"
        return 0, [(names, reason)]
    stored = len(body.get("00081199", {}).get("Value", []))
    failures = []
    for item in body.get("00081198", {}).get("Value", []):
        uid = item.get("00081155", {}).get("Value", ["(unknown instance)"])[0]
        failures.append((uid, _failure_text(item)))
    unreported = len(paths) - stored - len(failures)
    if unreported > 0:
        failures.append((names, f"{unreported} file(s) not reported by the server"))
    return stored, failures


def upload_paths(
    paths: list[Path],
    url: str,
    source: str | None = None,
    parallel: int = 4,
    batch_files: int = 32,
    batch_bytes: int = 64 * 1024 * 1024,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    progress: bool = True,
    order: str | None = None,
) -> int:
    """Upload; prints a summary and returns the process exit code (1 if anything failed)."""
    from tqdm import tqdm

    try:
        files = find_files(paths)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print("no files to upload", file=sys.stderr)
        return 2
    groups = batches(files, max(1, batch_files), max(1, batch_bytes))
    total_bytes = sum(p.stat().st_size for p in files)
    target = url.rstrip("/") + "/studies"
    params = {"source": source} if source else {}
    if order:
        # The order the files are for (docs/orders.md): a file of another patient is refused.
        params["order"] = order
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    auth = httpx.BasicAuth(username, password or "") if username else None
    summary = UploadSummary()
    lock = threading.Lock()
    bar = tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        desc=f"0/{len(files)} files",
        file=sys.stderr,
    )
    files_done = 0
    with httpx.Client(
        params=params, headers=headers, auth=auth, timeout=httpx.Timeout(600, connect=10)
    ) as client:

        def send(group: list[Path]) -> tuple[list[Path], int, list[tuple[str, str]]]:
            try:
                stored, failures = post_batch(client, target, group)
            except httpx.HTTPError as exc:
                return group, 0, [(", ".join(p.name for p in group[:3]), f"request failed: {exc}")]
            return group, stored, failures

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(send, group) for group in groups]
            for future in as_completed(futures):
                group, stored, failures = future.result()
                size = sum(p.stat().st_size for p in group)
                with lock:
                    summary.stored += stored
                    summary.failed.extend(failures)
                    summary.bytes_sent += size
                    files_done += len(group)
                    bar.set_description(f"{files_done}/{len(files)} files")
                    bar.update(size)
    bar.close()
    print(
        f"stored {summary.stored} of {len(files)} file(s), {summary.bytes_sent / 1e6:.1f} MB; "
        f"failed {len(summary.failed)}"
    )
    for what, reason in summary.failed:
        print(f"  FAILED {what}: {reason}")
    return 1 if summary.failed else 0
