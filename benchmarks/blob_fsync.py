"""How fast the file system store makes files durable: the disk's own fsync rate (one after
another, and 4 and 8 at a time) and `FileSystemBlobStore.put_files` (STOW-RS group commit) for
groups of 5 files with 1 and 4 concurrent callers.

    python benchmarks/blob_fsync.py [--dir /path/on/the/archive/disk] [--files 400] [--kb 480]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tessera.storage.blobstore import FileSystemBlobStore

GROUP = 5  # parts per group commit (dicomweb/stow.GROUP_PARTS was 5 when this was measured; now 10)


def fsync_rate(folder: Path, files: int, data: bytes, threads: int) -> float:
    def write(n: int) -> None:
        with open(folder / f"f{threads}_{n}", "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(files)))
    return files / (time.perf_counter() - started)


def put_files_rate(store: FileSystemBlobStore, files: int, data: bytes, callers: int) -> float:
    def group(g: int) -> None:
        items = []
        for i in range(GROUP):
            source = store.temp_dir / f"{callers}_{g}_{i}"
            source.write_bytes(data)
            items.append((f"1/{g % 16:02x}/{callers}_{g}_{i}", source))
        store.put_files(items)

    started = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(group, range(files // GROUP)))
    return files / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--kb", type=int, default=480)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="blob-fsync-", dir=args.dir))
    data = os.urandom(args.kb * 1024)
    try:
        for threads in (1, 4, 8):
            rate = fsync_rate(root, args.files, data, threads)
            print(f"disk: {threads} at a time, {args.kb} KB files fsynced: {rate:7.0f} files/s")
        store = FileSystemBlobStore(root / "store")
        for callers in (1, 4):
            rate = put_files_rate(store, args.files, data, callers)
            print(f"put_files, groups of {GROUP}, {callers} caller(s): {rate:7.0f} files/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
