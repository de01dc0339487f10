"""Blobs as objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, Ceph RGW...).

Client: obstore (Rust object_store bindings). Measured against SeaweedFS on loopback it was
about twice as fast per request as boto3 (median 100 KB PUT 2.0 ms vs 3.9 ms, 8 KB ranged GET
1.0 ms vs 2.2 ms, HEAD 0.5 ms vs 1.7 ms; 5 MB PUT 82 ms vs 313 ms), releases the GIL during
I/O, and gives multipart uploads, ranged reads and a seekable buffered reader out of the box.

Crash consistency: an upload goes to the local spool first; `put_file` returns only when the
object is complete in the bucket (a single PUT, or a multipart upload that has been
completed: S3 never shows a partial object), so the index row that ingest commits afterwards
always names a whole object. A crash between the two leaves an orphan object, which the
sweeper removes after the grace period. Aborted multipart uploads leave invisible parts:
give the bucket a lifecycle rule that aborts incomplete uploads (docs/scaling.md).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import obstore
from obstore.exceptions import (
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from tessera.storage.blobstore import StorageUnavailable, _check_key, sweep_folder

log = logging.getLogger(__name__)

# obstore raises the built-in FileNotFoundError for a missing object.
_NOT_FOUND = (NotFoundError, FileNotFoundError)

_KEY_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-./]*/$")

# A reader asks the store for at least this much at a time; also its memory bound.
READ_BUFFER = 1024 * 1024


class S3BlobStore:
    """Objects under their blob key in one bucket; uploads spooled in a local folder."""

    def __init__(
        self,
        bucket: str,
        spool_dir: Path,
        *,
        prefix: str = "",
        endpoint: str = "",
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
        path_style: bool = True,
        timeout_seconds: float = 30,
        multipart_bytes: int = 16 * 1024**2,
    ) -> None:
        if not bucket:
            raise ValueError("TESSERA_S3_BUCKET is required with TESSERA_BLOB_STORE=s3")
        self.bucket = bucket
        self.endpoint = endpoint
        self.temp_dir = Path(spool_dir)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.multipart_bytes = multipart_bytes
        config: dict[str, Any] = {"region": region}
        if access_key_id:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        else:
            config["skip_signature"] = not os.environ.get("AWS_ACCESS_KEY_ID")
        client: dict[str, Any] = {
            "timeout": timedelta(seconds=timeout_seconds),
            "connect_timeout": timedelta(seconds=min(5, timeout_seconds)),
        }
        if endpoint.startswith("http://"):
            client["allow_http"] = True
        if prefix and not _KEY_PREFIX_RE.match(prefix):
            raise ValueError(f"TESSERA_S3_PREFIX {prefix!r}: letters, digits, -_./, ending in /")
        self.prefix = prefix
        self._store = S3Store(
            bucket,
            prefix=prefix.rstrip("/") or None,
            endpoint=endpoint or None,
            virtual_hosted_style_request=not path_style,
            client_options=cast(Any, client),
            # Give up within about one timeout: a request that cannot reach the store is
            # answered 503 (retry later) rather than held for minutes.
            retry_config=cast(
                Any,
                {
                    "max_retries": 3,
                    "retry_timeout": timedelta(seconds=timeout_seconds),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=2),
                        "base": 2,
                    },
                },
            ),
            **config,
        )

    def __repr__(self) -> str:
        return f"S3BlobStore({self.endpoint or 'aws'}/{self.bucket}/{self.prefix})"

    def check(self) -> None:
        """Fail start-up with a clear message if the bucket cannot be read and written."""
        probe = f".tessera-probe/{os.getpid()}-{time.time_ns()}"
        try:
            obstore.put(self._store, probe, b"probe")
            obstore.delete(self._store, probe)
        except (PermissionDeniedError, UnauthenticatedError, PermissionError) as exc:
            raise StorageUnavailable(
                f"object store {self!r} refused the credentials (check TESSERA_S3_ACCESS_KEY_ID "
                f"and TESSERA_S3_SECRET_ACCESS_KEY): {_first_line(exc)}"
            ) from exc
        except _NOT_FOUND as exc:
            raise StorageUnavailable(
                f"object store {self!r}: bucket not found: {_first_line(exc)}"
            ) from exc
        except Exception as exc:
            raise StorageUnavailable(
                f"object store {self!r} cannot be used: {_first_line(exc)}"
            ) from exc

    def put_file(self, key: str, source: Path) -> None:
        _check_key(key)
        source = Path(source)
        size = source.stat().st_size
        try:
            if size > self.multipart_bytes:
                # Parts go up concurrently; the object appears only on completion.
                obstore.put(
                    self._store,
                    key,
                    source,
                    use_multipart=True,
                    chunk_size=self.multipart_bytes,
                    max_concurrency=4,
                )
            else:
                obstore.put(self._store, key, source.read_bytes(), use_multipart=False)
        except Exception as exc:
            raise _unavailable(exc, "write", key) from exc
        source.unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        _check_key(key)
        try:
            reader = obstore.open_reader(self._store, key, buffer_size=READ_BUFFER)
        except _NOT_FOUND as exc:
            raise FileNotFoundError(f"blob {key} not in the object store") from exc
        except Exception as exc:
            raise _unavailable(exc, "read", key) from exc
        return cast(BinaryIO, _Reader(reader, key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        _check_key(key)
        if length <= 0:
            return b""
        try:
            return bytes(obstore.get_range(self._store, key, start=offset, length=length))
        except _NOT_FOUND as exc:
            raise FileNotFoundError(f"blob {key} not in the object store") from exc
        except Exception as exc:
            if "range" in str(exc).lower() or "416" in str(exc):
                # Past the end: like pread, fewer (here the remaining) bytes.
                end = self.size(key)
                if offset >= end:
                    return b""
                return self.read_range(key, offset, end - offset)
            raise _unavailable(exc, "read", key) from exc

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["size"])

    def _head(self, key: str) -> Any:
        _check_key(key)
        try:
            return obstore.head(self._store, key)
        except _NOT_FOUND as exc:
            raise FileNotFoundError(f"blob {key} not in the object store") from exc
        except Exception as exc:
            raise _unavailable(exc, "read", key) from exc

    def delete(self, key: str) -> None:
        _check_key(key)
        try:
            obstore.delete(self._store, key)
        except _NOT_FOUND:
            pass
        except Exception as exc:
            raise _unavailable(exc, "delete", key) from exc

    def iter_keys(self, older_than: float) -> Iterator[str]:
        try:
            for batch in obstore.list(self._store, chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    if key.startswith("."):
                        continue
                    if meta["last_modified"].timestamp() < older_than:
                        yield key
        except Exception as exc:
            raise _unavailable(exc, "list", "") from exc

    def sweep_temp(self, older_than: float) -> int:
        """Delete local spool files left by interrupted uploads; returns how many."""
        return sweep_folder(self.temp_dir, older_than)


class _Reader:
    """A seekable file over ranged GETs (obstore's buffered reader), holding at most
    READ_BUFFER bytes; store failures surface as StorageUnavailable."""

    def __init__(self, reader: Any, key: str) -> None:
        self._reader = reader
        self._key = key

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._reader.read(size if size is not None and size >= 0 else None))
        except Exception as exc:
            raise _unavailable(exc, "read", self._key) from exc

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _unavailable(exc: BaseException, action: str, key: str) -> StorageUnavailable:
    log.warning(
        "object store %s failed",
        action,
        extra={"blob_key": key, "error": _first_line(exc)},
    )
    return StorageUnavailable(f"object store {action} failed: {_first_line(exc)}")
