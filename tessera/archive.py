"""The Archive: settings, the SQL index, the blob store and the audit writer, opened once
per process and shared by the DICOMweb and DIMSE facades.

`Archive.open` has no side effect on the schema: it refuses an index that is not at this
Tessera's schema revision (SchemaNotCurrent). `migrate_index` is the one place migrations
run; `tessera migrate`, `tessera serve` and `tessera scp` call it before opening."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tessera.auth.audit import AuditLog
from tessera.config import Settings
from tessera.index.database import Database
from tessera.index.migrate import check_schema, upgrade_to_head
from tessera.index.tenancy import TenantInfo, ensure_default_tenant
from tessera.storage.blobstore import BlobStore, open_blob_store

log = logging.getLogger(__name__)


def migrate_index(settings: Settings) -> None:
    """Bring the index schema to head (serialized across processes on PostgreSQL)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.resolved_database_url)
    try:
        upgrade_to_head(database.engine)
    finally:
        database.dispose()


@dataclass
class Archive:
    settings: Settings
    database: Database
    blob_store: BlobStore
    default_tenant: TenantInfo
    _audit: AuditLog | None = field(default=None, init=False, repr=False)
    _audit_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Archive:
        """Open an index at the current schema (else SchemaNotCurrent) and the blob store."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.resolved_database_url, settings.database_pool_size)
        try:
            check_schema(database.engine)
            with database.write() as conn:
                tenant = ensure_default_tenant(conn)
        except BaseException:
            database.dispose()
            raise
        store = open_blob_store(settings)
        log.info(
            "archive opened",
            extra={
                "data_dir": str(settings.data_dir.resolve()),
                "blob_store": str(getattr(store, "root", store)),
                "database": database.url.render_as_string(hide_password=True),
            },
        )
        return cls(settings, database, store, tenant)

    @property
    def spool_dir(self) -> Path:
        return self.settings.spool_dir

    @property
    def audit(self) -> AuditLog:
        """The audit trail's batched writer (DICOMweb requests and DIMSE operations),
        started on first use and stopped (flushed) by `close`."""
        with self._audit_lock:
            if self._audit is None:
                self._audit = AuditLog(self.database)
            return self._audit

    def close(self) -> None:
        with self._audit_lock:
            audit, self._audit = self._audit, None
        if audit is not None:
            audit.close()
        self.database.dispose()
