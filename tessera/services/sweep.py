"""Sweep what interrupted uploads left behind: stale spool files and orphan blobs (files
that no index row references, e.g. after a crash between file write and row commit, or the
files of a discarded or expired upload session; open sessions' files are kept).

Only files older than the grace period are touched: a younger file may belong to an upload
that another worker is still indexing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import select

from tessera.archive import Archive
from tessera.index.models import Instance
from tessera.index.upload_sessions import blob_keys_in_sessions
from tessera.services.upload_sessions import expire_sessions

log = logging.getLogger(__name__)
_BATCH = 500


@dataclass
class SweepReport:
    spool_files_removed: int = 0
    orphan_blobs_removed: int = 0
    blobs_checked: int = 0
    upload_sessions_expired: int = 0


def sweep_spool(archive: Archive, grace_seconds: float) -> int:
    store = archive.blob_store
    cutoff = time.time() - grace_seconds
    return store.sweep_temp(cutoff) if hasattr(store, "sweep_temp") else 0


def sweep_orphans(archive: Archive, grace_seconds: float) -> SweepReport:
    report = SweepReport()
    # Expired upload sessions are emptied first, so their files are swept in this pass.
    report.upload_sessions_expired = expire_sessions(archive)
    cutoff = time.time() - grace_seconds
    report.spool_files_removed = sweep_spool(archive, grace_seconds)
    batch: list[str] = []
    for key in archive.blob_store.iter_keys(cutoff):
        batch.append(key)
        if len(batch) >= _BATCH:
            report.orphan_blobs_removed += _remove_unreferenced(archive, batch)
            report.blobs_checked += len(batch)
            batch = []
    if batch:
        report.orphan_blobs_removed += _remove_unreferenced(archive, batch)
        report.blobs_checked += len(batch)
    log.info("sweep finished", extra=vars(report))
    return report


def _remove_unreferenced(archive: Archive, keys: list[str]) -> int:
    with archive.database.read() as conn:
        referenced = set(
            conn.execute(select(Instance.blob_key).where(Instance.blob_key.in_(keys))).scalars()
        )
        referenced |= blob_keys_in_sessions(conn, keys)  # open upload sessions' files
    removed = 0
    for key in keys:
        if key not in referenced:
            archive.blob_store.delete(key)
            log.info("orphan blob removed", extra={"blob_key": key})
            removed += 1
    return removed
