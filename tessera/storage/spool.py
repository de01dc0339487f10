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
        self._fh = os.fdopen(fd, "wb", buffering=1024 * 1024)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

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
