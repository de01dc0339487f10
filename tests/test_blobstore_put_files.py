"""FileSystemBlobStore.put_files (STOW-RS group commit): every file lands under its key with
its exact bytes and leaves the spool, across several folders, with the fsyncs run side by
side; a missing source is an error, not a silent skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tessera.storage.blobstore import FileSystemBlobStore


def _spooled(store: FileSystemBlobStore, count: int) -> list[tuple[str, Path, bytes]]:
    items = []
    for n in range(count):
        data = os.urandom(1000 + n)
        source = store.temp_dir / f"part{n}"
        source.write_bytes(data)
        items.append((f"1/{n % 3:02d}/blob{n}", source, data))
    return items


def test_every_file_lands_under_its_key(tmp_path: Path) -> None:
    store = FileSystemBlobStore(tmp_path / "store")
    items = _spooled(store, 12)
    store.put_files([(key, source) for key, source, _ in items])
    for key, source, data in items:
        assert store.path_for(key).read_bytes() == data
        assert not source.exists()
    assert sorted(p.name for p in (tmp_path / "store" / "1").iterdir()) == ["00", "01", "02"]


def test_a_missing_source_is_an_error(tmp_path: Path) -> None:
    store = FileSystemBlobStore(tmp_path / "store")
    items = _spooled(store, 4)
    items[2][1].unlink()
    with pytest.raises(FileNotFoundError):
        store.put_files([(key, source) for key, source, _ in items])
    assert not store.exists(items[2][0])
