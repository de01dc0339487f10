"""Blob stores keep each stored instance's exact bytes under a key.

Callers only use the BlobStore protocol, so the S3-compatible store (storage/s3.py) sits beside
the file system one without touching them. Keys are relative, '/'-separated and built only by
`blob_key_for` (never from client input), so they cannot escape the store.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import BufferedReader
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from tessera.config import Settings

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")


class StorageUnavailable(Exception):
    """The blob store cannot be reached (or refuses us) right now: the request is answered
    503 with Retry-After, and nothing is recorded for what could not be stored."""


def blob_key_for(tenant_id: int, sha256_hex: str) -> str:
    """Content-addressed key: the same bytes in one tenant always land on the same key,
    which makes a repeated upload idempotent and concurrent identical uploads harmless."""
    # One level of 256 folders: few enough that they all exist after warm-up (creating and
    # syncing a new folder per upload was measurable), enough for millions of files on ext4.
    return f"t{tenant_id}/{sha256_hex[:2]}/{sha256_hex}.dcm"


def _check_key(key: str) -> None:
    if not _KEY_RE.match(key) or ".." in key:
        raise ValueError(f"invalid blob key {key!r}")


class BlobStore(Protocol):
    def put_file(self, key: str, source: Path) -> None:
        """Make the (fully written) file at `source` durable under `key`, atomically.
        The source file is consumed (moved or deleted)."""

    def open(self, key: str) -> BinaryIO:
        """Open the blob for reading (seekable)."""

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer only at the end of the blob). Retrieval reads
        frames and bulk data this way; an object store maps it to a ranged GET."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""

    def iter_keys(self, older_than: float) -> Iterator[str]:
        """Keys of blobs last modified before the POSIX time `older_than`."""

    def sweep_temp(self, older_than: float) -> int:
        """Delete temporary (spool) files older than `older_than`; returns how many."""


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name (TESSERA_BLOB_STORE); an object store is checked
    (credentials, bucket) so that a wrong setting fails at start-up, not at the first upload."""
    if settings.blob_store == "filesystem":
        return FileSystemBlobStore(settings.blob_dir)
    if settings.blob_store == "s3":
        from tessera.storage.s3 import S3BlobStore

        store = S3BlobStore(
            settings.s3_bucket,
            settings.spool_dir,
            prefix=settings.s3_prefix,
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            path_style=settings.s3_path_style,
            timeout_seconds=settings.s3_timeout_seconds,
            multipart_bytes=settings.s3_multipart_bytes,
        )
        store.check()
        return store
    raise ValueError(
        f"unknown TESSERA_BLOB_STORE {settings.blob_store!r} (use 'filesystem' or 's3')"
    )


def put_files(store: BlobStore, items: list[tuple[str, Path]]) -> None:
    """Make several files durable under their keys: one folder sync per folder where the
    store can (FileSystemBlobStore.put_files), else one `put_file` each."""
    grouped = getattr(store, "put_files", None)
    if grouped is not None:
        grouped(items)
        return
    for key, source in items:
        store.put_file(key, source)


_SYNC_THREADS = 16
_sync_pool_instance: ThreadPoolExecutor | None = None
_sync_pool_lock = threading.Lock()


def _sync_pool() -> ThreadPoolExecutor:
    """Threads that only wait on fsync (created on first use, so a forked or spawned worker
    makes its own)."""
    global _sync_pool_instance
    with _sync_pool_lock:
        if _sync_pool_instance is None:
            _sync_pool_instance = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="fsync")
        return _sync_pool_instance


def _sync_file(source: Path) -> None:
    with open(source, "rb+") as fh:
        os.fsync(fh.fileno())
    # The blob's age (for the orphan sweeper's grace period) counts from now, not from when
    # a slow upload started writing it.
    os.utime(source)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_folder(folder: Path, older_than: float) -> int:
    """Delete the files in `folder` last modified before `older_than` (a time.time() value):
    what interrupted uploads left in a spool folder. Returns how many."""
    removed = 0
    for entry in folder.iterdir():
        try:
            if entry.is_file() and entry.stat().st_mtime < older_than:
                entry.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


class FileSystemBlobStore:
    """Blobs as files under a root folder.

    A blob is written in full to a temporary file on the same file system, fsynced, then
    renamed into place (rename is atomic), and the folder is fsynced so the name survives
    a crash. A reader therefore sees either no file or the complete file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = self.root / ".spool"
        self.temp_dir.mkdir(exist_ok=True)
        self._made_dirs: set[Path] = set()

    def path_for(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def put_file(self, key: str, source: Path) -> None:
        fsync_directory(self._place(key, source).parent)

    def put_files(self, items: list[tuple[str, Path]]) -> None:
        """`put_file` for several blobs (group commit): each file is fsynced and renamed into
        place, then each folder that received a name is fsynced once. All are durable when
        this returns; on an error, none may be relied on (some may be in place)."""
        # The fsyncs run side by side: a virtual disk takes ~8 ms per fsync but serves many
        # at once (here 131 fsynced 480 KB files/s one after another, 1,221/s four at a time).
        pool = _sync_pool()
        list(pool.map(_sync_file, [Path(source) for _, source in items]))
        folders = {self._rename(key, Path(source)).parent for key, source in items}
        list(pool.map(fsync_directory, folders))

    def _place(self, key: str, source: Path) -> Path:
        """Fsync `source` and rename it to the key's path (its folder not yet synced)."""
        _sync_file(Path(source))
        return self._rename(key, Path(source))

    def _rename(self, key: str, source: Path) -> Path:
        """Rename the (already fsynced) `source` to the key's path."""
        target = self.path_for(key)
        if target.parent not in self._made_dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(target.parent)
        try:
            try:
                os.replace(source, target)
            except FileNotFoundError:
                # The folder was removed behind our back (e.g. by an operator): recreate it.
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Source on another file system: copy next to the target first, then rename.
            staged = self.temp_dir / f"{target.name}.{os.getpid()}.copy"
            shutil.copyfile(source, staged)
            with open(staged, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(staged, target)
            source.unlink()
        return target

    def open(self, key: str) -> BufferedReader:
        return open(self.path_for(key), "rb")

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        # One open + pread: no seek state, safe from any thread.
        fd = os.open(self.path_for(key), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def size(self, key: str) -> int:
        return self.path_for(key).stat().st_size

    def delete(self, key: str) -> None:
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            pass

    def iter_keys(self, older_than: float) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                full = Path(dirpath) / name
                try:
                    if full.stat().st_mtime >= older_than:
                        continue
                except FileNotFoundError:
                    continue
                yield full.relative_to(self.root).as_posix()

    def sweep_temp(self, older_than: float) -> int:
        """Delete temporary files left by interrupted uploads; returns how many."""
        return sweep_folder(self.temp_dir, older_than)
