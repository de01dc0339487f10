"""Spool files: an upload's bytes go to disk as they arrive, hashed on the way."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class SpoolFile:
    """A temporary file in the spool folder that hashes (SHA-256) what is written to it."""

    def __init__(self, spool_dir: Path) -> None:
        fd, name = tempfile.mkstemp(prefix="part-", suffix=".tmp", dir=spool_dir)
        self.path = Path(name)
        # Unbuffered: writers hand over pieces of hundreds of KB (multipart parts, 1 MiB
        # copies), which a buffer would only copy once more.
        self._fd: int | None = fd
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd is None:
            raise ValueError("write to a closed spool file")
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            written += os.write(self._fd, view[written:])
        self._hash.update(view)
        self.size += len(view)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def discard(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> SpoolFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
